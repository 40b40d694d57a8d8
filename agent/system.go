package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/GehirnInc/crypt"
	_ "github.com/GehirnInc/crypt/sha512_crypt" // rootpw in clear text is stored as a $6$ hash
	"github.com/herdproject/herd/kickstart"
)

// rootHash is the /etc/shadow password field for a rootpw command: the
// given crypt(3) hash, or a SHA-512 crypt of a clear-text password; a
// locked account gets a leading '!'.
func rootHash(rp *kickstart.RootPW) (string, error) {
	h := rp.Password
	if !rp.Crypted && h != "" {
		var err error
		h, err = crypt.SHA512.New().Generate([]byte(rp.Password), nil)
		if err != nil {
			return "", fmt.Errorf("rootpw: %w", err)
		}
	}
	if h == "" {
		h = "*"
	}
	if rp.Lock && !strings.HasPrefix(h, "!") {
		h = "!" + h
	}
	return h, nil
}

// setShadowRoot sets root's password field in an /etc/shadow text,
// keeping every other byte; a shadow without a root line gets one first.
func setShadowRoot(shadow, hash string) string {
	lines := strings.SplitAfter(shadow, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "root:") {
			continue
		}
		body := strings.TrimRight(l, "\n")
		f := strings.Split(body, ":")
		if len(f) < 2 {
			continue
		}
		f[1] = hash
		lines[i] = strings.Join(f, ":") + l[len(body):]
		return strings.Join(lines, "")
	}
	return "root:" + hash + ":19000:0:99999:7:::\n" + shadow
}

// applySettings carries out the plan's rootpw and timezone in the target.
func (a *agent) applySettings() error {
	ps := a.plan
	p := ps.plan
	if p.RootPW != nil {
		hash, err := rootHash(p.RootPW)
		if err != nil {
			return err
		}
		name := filepath.Join(ps.target, "etc", "shadow")
		b, err := os.ReadFile(name)
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		if err := os.WriteFile(name+".herd", []byte(setShadowRoot(string(b), hash)), 0o640); err != nil {
			return err
		}
		if err := os.Rename(name+".herd", name); err != nil {
			return err
		}
		a.con.printf("  wrote /etc/shadow (root's password from plan line %d)", p.RootPW.Line)
	}
	if p.Timezone != "" {
		zone := filepath.Join("/usr/share/zoneinfo", filepath.Clean("/"+p.Timezone))
		if _, err := os.Stat(filepath.Join(ps.target, zone)); err != nil {
			a.con.printf("  warning: timezone %s: %s is not in the installed system: /etc/localtime left alone", p.Timezone, zone)
		} else {
			lt := filepath.Join(ps.target, "etc", "localtime")
			_ = os.Remove(lt)
			if err := os.Symlink(zone, lt); err != nil {
				return fmt.Errorf("timezone: %w", err)
			}
			if err := os.WriteFile(filepath.Join(ps.target, "etc", "timezone"), []byte(p.Timezone+"\n"), 0o644); err != nil {
				return fmt.Errorf("timezone: %w", err)
			}
			a.con.printf("  /etc/localtime → %s", zone)
		}
	}
	return nil
}
