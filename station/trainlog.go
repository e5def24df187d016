package station

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// DefaultMaxTrainLog bounds the train output a station keeps per stop when
// Station.MaxTrainLog is 0.
const DefaultMaxTrainLog = 1 << 20

// DefaultKeepTrainLogs bounds how many stops' logs a station keeps when
// Station.KeepTrainLogs is 0 (at most about 200 MiB with the default cap).
const DefaultKeepTrainLogs = 200

// A train's stdout and stderr never reach the station's own log stream (a
// train could forge its records or send terminal escapes there). They are
// kept per stop in a private file under Station.TrainLogDir, capped, and
// shown only through EscapeLog.

// trainLog is one stop's kept output: the first max bytes, then a marker.
type trainLog struct {
	mu       sync.Mutex
	f        *os.File
	kept     int64
	total    int64
	max      int64
	writeErr error
}

// Write keeps what fits and drops the rest; it never fails the train's
// writes (a full log is the station's concern, not the train's).
func (l *trainLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total += int64(len(p))
	if room := l.max - l.kept; room > 0 && l.writeErr == nil {
		q := p
		if int64(len(q)) > room {
			q = q[:room]
		}
		n, err := l.f.Write(q)
		l.kept += int64(n)
		l.writeErr = err
	}
	return len(p), nil
}

func (l *trainLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total > l.kept {
		fmt.Fprintf(l.f, "\n[trainyard: train output truncated: %d bytes written, first %d kept]\n", l.total, l.kept)
	}
	err := l.f.Close()
	if l.writeErr != nil {
		return l.writeErr
	}
	return err
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// trainOutput opens the kept log of one stop (labelled with the train id
// and stop index in its name and first line) and records its path in st.
// With no TrainLogDir the output is discarded.
func (s *Station) trainOutput(st *Stop) (io.Writer, func(), error) {
	if s.TrainLogDir == "" {
		return io.Discard, func() {}, nil
	}
	if err := os.MkdirAll(s.TrainLogDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("train log: %w", err)
	}
	max := s.MaxTrainLog
	if max <= 0 {
		max = DefaultMaxTrainLog
	}
	now := time.Now().UTC()
	name := fmt.Sprintf("%s.stop%d.%s.log", unsafeName.ReplaceAllString(st.Train, "_"), st.Index, now.Format("20060102T150405.000000000Z"))
	p := filepath.Join(s.TrainLogDir, name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("train log: %w", err)
	}
	fmt.Fprintf(f, "[trainyard: output of train %s, stop %d, at station %s, %s]\n", strconv.Quote(st.Train), st.Index, s.ID, now.Format(time.RFC3339))
	l := &trainLog{f: f, max: max}
	st.Log = p
	s.pruneTrainLogs()
	return l, func() {
		if err := l.Close(); err != nil {
			s.logger().Warn("train log", "path", p, "error", err.Error())
		}
	}, nil
}

// TrainLog is one kept train log.
type TrainLog struct {
	Path string
	Name string // file name: TRAIN.stopN.TIME.log
}

// TrainLogs lists the kept logs in dir, oldest first; train, if not "",
// keeps only that train's.
func TrainLogs(dir, train string) ([]TrainLog, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []TrainLog
	prefix := unsafeName.ReplaceAllString(train, "_") + ".stop"
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(n, ".log") || (train != "" && !strings.HasPrefix(n, prefix)) {
			continue
		}
		out = append(out, TrainLog{Path: filepath.Join(dir, n), Name: n})
	}
	// Names end in a sortable UTC time; sort by it.
	key := func(n string) string {
		n = strings.TrimSuffix(n, ".log")
		return n[strings.LastIndexByte(n, '.')+1:]
	}
	sort.SliceStable(out, func(i, j int) bool { return key(out[i].Name) < key(out[j].Name) })
	return out, nil
}

// EscapeLog copies a kept train log to w with everything a terminal or a
// log parser could act on escaped: control characters other than newline
// and tab (ESC, CR, backspace, C1 controls), Unicode format characters
// (bidi overrides) and invalid UTF-8 become \xNN or \u{NNNN}. Memory stays
// bounded whatever the line lengths.
func EscapeLog(w io.Writer, r io.Reader) error {
	br := bufio.NewReader(r)
	bw := bufio.NewWriter(w)
	for {
		c, size, err := br.ReadRune()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch {
		case c == utf8.RuneError && size == 1:
			br.UnreadRune()
			b, _ := br.ReadByte()
			fmt.Fprintf(bw, `\x%02x`, b)
		case c == '\n' || c == '\t':
			bw.WriteRune(c)
		case c == '\\':
			bw.WriteString(`\\`)
		case c < 0x80 && (c < 0x20 || c == 0x7f):
			fmt.Fprintf(bw, `\x%02x`, c)
		case unicode.IsControl(c) || unicode.Is(unicode.Cf, c):
			fmt.Fprintf(bw, `\u{%04x}`, c)
		default:
			bw.WriteRune(c)
		}
	}
	return bw.Flush()
}

// pruneTrainLogs removes the oldest kept logs beyond KeepTrainLogs, so the
// logs' total stays bounded however many trains come.
func (s *Station) pruneTrainLogs() {
	keep := s.KeepTrainLogs
	if keep <= 0 {
		keep = DefaultKeepTrainLogs
	}
	ls, err := TrainLogs(s.TrainLogDir, "")
	if err != nil {
		return
	}
	for _, l := range ls[:max(0, len(ls)-keep)] {
		os.Remove(l.Path)
	}
}
