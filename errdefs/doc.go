// Package errdefs is trainyard's error vocabulary: the few kinds of failure a
// caller branches on, whichever package reported them.
//
// Every package keeps its own exported sentinels (hardened.ErrTampered,
// phtv2.ErrTampered, tuf.ErrTampered, ...) with their own messages, and each
// of them matches the shared kind with errors.Is:
//
//	if errors.Is(err, errdefs.ErrTampered) {
//		// any protocol, TUF or layer digest mismatch
//	}
//
// A package sentinel is built with New, which names the kinds it belongs to.
// The package imports nothing of trainyard, so every other package can use it.
// docs/errors.md lists which sentinel matches which kind.
package errdefs
