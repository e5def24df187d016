package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/docker/go-units"
)

// byteSize is a flag value in bytes that also takes human sizes the way
// `docker run --memory` does: 512M, 1g, 1Gi, 1GiB (binary multiples), or a
// plain number of bytes. go-units is the engine's own parser, so a size
// means the same here as in a Docker command line.
type byteSize int64

func (b *byteSize) String() string {
	if *b == 0 {
		return "0"
	}
	return units.BytesSize(float64(*b))
}

func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func (b *byteSize) Type() string { return "size" }

func parseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("size %q is negative", s)
		}
		return n, nil
	}
	in := s
	if strings.HasSuffix(s, "i") || strings.HasSuffix(s, "I") {
		in += "B" // Kubernetes' 1Gi is go-units' 1GiB
	}
	n, err := units.RAMInBytes(in)
	if err != nil || n < 0 { // a float beyond int64 converts to a negative value
		return 0, fmt.Errorf("size %q: want bytes or a number with K, M, G or T (e.g. 512M, 1Gi)", s)
	}
	return n, nil
}

// nonNegativeDuration is a duration flag that refuses negative values when
// the flags are parsed, not after the work they bound has begun.
type nonNegativeDuration time.Duration

// String is "0" when unset, so --help shows the usage text's own default
// and not pflag's "(default 0s)".
func (d *nonNegativeDuration) String() string {
	if *d == 0 {
		return "0"
	}
	return time.Duration(*d).String()
}

func (d *nonNegativeDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want e.g. 90s, 30m or 2h", s)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = nonNegativeDuration(v)
	return nil
}

func (d *nonNegativeDuration) Type() string { return "duration" }

// applyEnv sets each flag of cmd that the command line left alone from its
// environment variable, through the flag's own parser, so a bad value is a
// usage error naming the variable (never a silent fallback to the default).
func applyEnv(cmd *cobra.Command, vars [][2]string) error {
	for _, fv := range vars {
		flag, env := fv[0], fv[1]
		v := os.Getenv(env)
		if v == "" || cmd.Flags().Changed(flag) {
			continue
		}
		if err := cmd.Flags().Set(flag, v); err != nil {
			return &ExitError{Code: 2, Err: fmt.Errorf("%s=%q: %w", env, v, err)}
		}
	}
	return nil
}
