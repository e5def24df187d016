package trainrun

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
)

// maxPasswdSize bounds what is read of the image's /etc/passwd and /etc/group.
const maxPasswdSize = 1 << 20

// resolveUser turns an image or spec user ("", "uid", "uid:gid", "name",
// "name:group") into numeric ids, looking names up in the image's own
// /etc/passwd and /etc/group (never the host's). A bare uid takes its primary
// group from /etc/passwd when listed there, else 0, as Docker does.
func resolveUser(rootfs fs.FS, user string) (uid, gid uint32, err error) {
	if user == "" {
		return 0, 0, nil
	}
	us, gs, hasGroup := strings.Cut(user, ":")
	var users []passwdEntry
	if f, err := rootfs.Open("etc/passwd"); err == nil {
		users, _ = parsePasswd(io.LimitReader(f, maxPasswdSize))
		f.Close()
	}
	if n, err := strconv.ParseUint(us, 10, 32); err == nil {
		uid = uint32(n)
		for _, e := range users {
			if e.id == uid {
				gid = e.gid
				break
			}
		}
	} else {
		ok := false
		for _, e := range users {
			if e.name == us {
				uid, gid, ok = e.id, e.gid, true
				break
			}
		}
		if !ok {
			return 0, 0, fmt.Errorf("%w: user %q not found in the image's /etc/passwd", ErrInvalidSpec, us)
		}
	}
	if !hasGroup {
		return uid, gid, nil
	}
	if n, err := strconv.ParseUint(gs, 10, 32); err == nil {
		return uid, uint32(n), nil
	}
	var groups []passwdEntry
	if f, err := rootfs.Open("etc/group"); err == nil {
		groups, _ = parsePasswd(io.LimitReader(f, maxPasswdSize))
		f.Close()
	}
	for _, g := range groups {
		if g.name == gs {
			return uid, g.id, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: group %q not found in the image's /etc/group", ErrInvalidSpec, gs)
}

// passwdEntry is one line of /etc/passwd (name, uid, gid) or /etc/group
// (name, gid; gid left zero).
type passwdEntry struct {
	name    string
	id, gid uint32
}

// parsePasswd reads colon-separated passwd or group lines: name:x:id[:gid:...].
// Malformed lines are skipped; the image is untrusted input.
func parsePasswd(r io.Reader) ([]passwdEntry, error) {
	var out []passwdEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < 3 || f[0] == "" {
			continue
		}
		id, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		e := passwdEntry{name: f[0], id: uint32(id)}
		if len(f) >= 4 {
			if g, err := strconv.ParseUint(f[3], 10, 32); err == nil {
				e.gid = uint32(g)
			}
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
