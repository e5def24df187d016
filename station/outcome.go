package station

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/protocol/phtv2"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainimage"
	"github.com/trainyard/trainyard/trainrun"
)

// State is where a stop is in its life at this station. A stop is one
// train (its signed statement digest) at one route index.
type State string

const (
	// Held: verified, waiting for the operator (serve --hold).
	Held State = "held"
	// Accepted: the operator accepted a held train; it runs on the next poll.
	Accepted State = "accepted"
	// Running: the stop started (pre-run) and has not ended.
	Running State = "running"
	// Review: the train ran; its results wait for release (--review-results).
	Review State = "review"
	// Interrupted: the station stopped or a transient failure hit while the
	// stop ran; nothing was pushed, and it runs again from the same input.
	Interrupted State = "interrupted"
	// Retry: the operator asked for a failed or interrupted stop to run again.
	Retry State = "retry"

	// Final states: a stop in one never runs again (except by `station retry`
	// for Failed).
	Done     State = "done"
	Failed   State = "failed"
	Refused  State = "refused"
	Rejected State = "rejected"
	Withheld State = "withheld"
)

// Final reports whether a stop in state s is over.
func (s State) Final() bool {
	switch s {
	case Done, Failed, Refused, Rejected, Withheld:
		return true
	}
	return false
}

// Class is how a stop's error is handled, decided once here for both
// protocols.
type Class string

const (
	// Transient: registry, network, trust update or runtime unavailable.
	// Retried with backoff, never recorded as a verdict.
	Transient Class = "transient"
	// ClassRefused: verification, approval, route or replay. Final for the
	// train bytes that were refused, recorded with the reason.
	ClassRefused Class = "refused"
	// ClassFailed: the train ran and failed (exit code, out of memory,
	// timeout, results over the cap, a program that cannot be started).
	// Final, recorded as failed.
	ClassFailed Class = "failed"
	// ClassInterrupted: the station was stopped (its context ended) during
	// the stop. Run again on the next start.
	ClassInterrupted Class = "interrupted"
	// ClassWaiting: not a failure: the stop waits for an operator (held or
	// under review).
	ClassWaiting Class = "waiting"
)

// Errors a stop ends with besides the protocols' own.
var (
	// ErrHeld: the train is verified and waits for `station accept`.
	ErrHeld = errors.New("train held for the operator")
	// ErrUnderReview: the train ran; its results wait for `station release`.
	ErrUnderReview = errors.New("results held for review")
	// ErrRejected: the operator rejected the train.
	ErrRejected = errors.New("train rejected by the operator")
	// ErrNotTrain: the inbox entry is not a train (a signature, an
	// attestation, an index, an artifact); skipped without a verdict.
	ErrNotTrain = errors.New("not a train")
)

// refusals are the sentinels that mean "these bytes must not run here".
var refusals = []error{
	hardened.ErrMalformed, hardened.ErrSignature, hardened.ErrTampered, hardened.ErrUntrusted,
	hardened.ErrUnapproved, hardened.ErrRoute, hardened.ErrReplay, hardened.ErrUnsupported,
	phtv2.ErrKey, phtv2.ErrDecrypt, phtv2.ErrTampered, phtv2.ErrSignature, phtv2.ErrStation, phtv2.ErrPaillier,
	train.ErrConfig, train.ErrLayout, train.ErrTooLarge, train.ErrPlaintext,
	trainrun.ErrLayerDigest, trainrun.ErrUnsafeImage, trainrun.ErrInvalidSpec,
	trainimage.ErrImage, trainimage.ErrLimit, ErrRejected, registry.ErrExists,
}

// failures are the sentinels of a train that ran and failed.
var failures = []error{
	trainrun.ErrExit, trainrun.ErrOOM, trainrun.ErrTimeout, trainrun.ErrResultsTooLarge, trainrun.ErrStart,
	hardened.ErrResultsTooLarge, hardened.ErrTreeBounds, train.ErrResultsTooLarge, errPostRunDeadline,
}

// errPostRunDeadline marks post-run stopped by --timeout: the train's
// results were too much to seal in time, which is the train's doing.
var errPostRunDeadline = errors.New("post-run stopped by its deadline (--timeout)")

// Classify says how err, returned by a stop, is handled. Anything not known
// to be the train's doing (a refusal or a failure) is transient: a station
// that cannot tell must not lose a genuine train to a registry hiccup.
func Classify(err error) Class {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrHeld), errors.Is(err, ErrUnderReview):
		return ClassWaiting
	case errors.Is(err, trainrun.ErrUnavailable):
		return Transient
	}
	for _, f := range failures {
		if errors.Is(err, f) {
			return ClassFailed
		}
	}
	// A registry or network failure under a refusal's wrapping (a blob
	// that could not be fetched while the image was read) is still the
	// registry's doing, not the train's.
	if infrastructure(err) {
		return Transient
	}
	for _, r := range refusals {
		if errors.Is(err, r) {
			return ClassRefused
		}
	}
	if errors.Is(err, context.Canceled) {
		return ClassInterrupted
	}
	return Transient
}

// infrastructure reports registry answers and network failures: a
// transport error of the registry's (5xx, 429, 408, 401, 403, 404 on a
// blob), a network error, a deadline, a layer damaged in the registry.
func infrastructure(err error) bool {
	// A layer whose bytes do not match its manifest's digest came damaged
	// from the registry (storage or transfer): the manifest, which is what
	// a stop is keyed by, may be genuine. Never run, retried later.
	if errors.Is(err, trainimage.ErrTransfer) || errors.Is(err, trainrun.ErrBlobMismatch) {
		return true
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, registry.ErrNotFound)
}
