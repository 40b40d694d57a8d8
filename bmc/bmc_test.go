package bmc

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Target
		err  string
	}{
		{in: "ipmi://admin@10.0.0.101", want: Target{"ipmi", "admin", "10.0.0.101", 623}},
		{in: "ipmi://admin@bmc-n1.rack:6230", want: Target{"ipmi", "admin", "bmc-n1.rack", 6230}},
		{in: "redfish://root@[fd00::1]", want: Target{"redfish", "root", "fd00::1", 443}},
		{in: "ipmi://admin:secret@10.0.0.101", err: "the password does not go in the BMC URL"},
		{in: "ipmi://10.0.0.101", err: "no user"},
		{in: "ssh://admin@10.0.0.101", err: "want ipmi://USER@HOST or redfish://USER@HOST"},
		{in: "ipmi://admin@10.0.0.101:0", err: "port"},
		{in: "ipmi://admin@10.0.0.101:99999", err: "port"},
		{in: "redfish://admin@10.0.0.101/redfish/v1", err: "want only redfish://USER@HOST[:PORT]"},
		{in: "ipmi://admin@", err: "no host"},
		// IPv6 without brackets: "::3" would be host ":" port 3 (FuzzParse).
		{in: "redfish://root@::3", err: "write an IPv6 address in brackets"},
		{in: "ipmi://admin@fd00::1", err: "write an IPv6 address in brackets"},
		{in: "ipmi://admin@[fd00::1]:6230", want: Target{"ipmi", "admin", "fd00::1", 6230}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("Parse(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if tt.err != "" && err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Parse(%q): the error shows the password: %v", tt.in, err)
		}
		if tt.err == "" {
			if back, err := Parse(got.String()); err != nil || back != got {
				t.Errorf("%q: String %q parses as %+v, %v", tt.in, got.String(), back, err)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"ipmi://admin@10.0.0.101", "redfish://root@[fd00::1]:8443", "ipmi://a:b@c", "ipmi://@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := Parse(s)
		if err != nil {
			return
		}
		if tg.User == "" || tg.Host == "" || tg.Port < 1 || tg.Port > 65535 {
			t.Fatalf("Parse(%q) = %+v", s, tg)
		}
		if back, err := Parse(tg.String()); err != nil || back != tg {
			t.Fatalf("%q: String %q parses as %+v, %v", s, tg.String(), back, err)
		}
	})
}
