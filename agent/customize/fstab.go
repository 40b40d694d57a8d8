package customize

import (
	"fmt"
	"sort"
	"strings"

	"github.com/herdproject/herd/internal/mountinfo"
)

// fstabField is one whitespace-separated field of an fstab line and
// where it is.
type fstabField struct {
	start, end int
}

// fstabFields splits an fstab(5) line into fields at spaces and tabs.
func fstabFields(l string) []fstabField {
	var out []fstabField
	i := 0
	for i < len(l) {
		for i < len(l) && (l[i] == ' ' || l[i] == '\t' || l[i] == '\r') {
			i++
		}
		if i >= len(l) {
			break
		}
		start := i
		for i < len(l) && l[i] != ' ' && l[i] != '\t' && l[i] != '\r' {
			i++
		}
		out = append(out, fstabField{start, i})
	}
	return out
}

// checkUUID accepts what can follow "UUID=" in fstab: a non-empty word.
func checkUUID(u string) error {
	if u == "" || strings.ContainsAny(u, " \t\r\n#\\") {
		return fmt.Errorf("UUID %q: want a filesystem UUID", u)
	}
	return nil
}

// rewriteFstab sets the fs_spec of the entries for the mount points in
// byUUID to UUID=<uuid> (the key "swap" also matches an entry of type
// swap), keeping every other byte. missing lists the keys no entry
// matched; two entries for one key are an error.
func rewriteFstab(content string, byUUID map[string]string) (out string, changed []string, missing []string, err error) {
	lines := strings.SplitAfter(content, "\n")
	hits := map[string]int{}
	for i, l := range lines {
		body := strings.TrimRight(l, "\n")
		f := fstabFields(body)
		if len(f) < 2 || body[f[0].start] == '#' {
			continue
		}
		file := mountinfo.Unescape(body[f[1].start:f[1].end])
		key := ""
		if _, ok := byUUID[file]; ok {
			key = file
		} else if _, ok := byUUID["swap"]; ok && len(f) >= 3 && body[f[2].start:f[2].end] == "swap" {
			key = "swap"
		}
		if key == "" {
			continue
		}
		hits[key]++
		if hits[key] > 1 {
			return "", nil, nil, fmt.Errorf("fstab has several entries for %s: cannot tell which gets UUID=%s", key, byUUID[key])
		}
		spec := "UUID=" + byUUID[key]
		if body[f[0].start:f[0].end] == spec {
			continue
		}
		lines[i] = body[:f[0].start] + spec + body[f[0].end:] + l[len(body):]
		changed = append(changed, fmt.Sprintf("%s → %s", file, spec))
	}
	for k := range byUUID {
		if hits[k] == 0 {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	return strings.Join(lines, ""), changed, missing, nil
}

// fstab rewrites /etc/fstab's entries by UUID.
func (t *tree) fstab(byUUID map[string]string) error {
	if len(byUUID) == 0 {
		return nil
	}
	keys := make([]string, 0, len(byUUID))
	for k, u := range byUUID {
		if err := checkUUID(u); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		keys = append(keys, k)
	}
	const name = "/etc/fstab"
	b, ok, err := t.read(name)
	if err != nil {
		return err
	}
	if !ok {
		t.note("note: no %s: entries for %s not written", name, strings.Join(keys, ", "))
		return nil
	}
	out, changed, missing, err := rewriteFstab(string(b), byUUID)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		if err := t.write(name, []byte(out), 0o644, false); err != nil {
			return err
		}
		t.note("wrote %s (%s)", name, strings.Join(changed, ", "))
	} else if len(missing) < len(keys) {
		t.note("kept %s (its entries already name their UUIDs)", name)
	}
	if len(missing) > 0 {
		t.note("note: %s has no entry for %s: not added", name, strings.Join(missing, ", "))
	}
	return nil
}
