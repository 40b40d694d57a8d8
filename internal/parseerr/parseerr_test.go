package parseerr

import (
	"errors"
	"strings"
	"testing"
)

func TestError(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a.cfg", Line: 3, Msg: "bad"}, "a.cfg:3: bad"},
		{Error{Line: 7, Msg: "bad"}, "line 7: bad"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestReadAll(t *testing.T) {
	got, err := ReadAll("x", strings.NewReader("12345"), 5, "a thing")
	if err != nil || string(got) != "12345" {
		t.Fatalf("at the limit: %q, %v", got, err)
	}
	_, err = ReadAll("x", strings.NewReader(strings.Repeat("z", 3<<20)), 2<<20, "a thing")
	var pe *Error
	if !errors.As(err, &pe) || pe.Line != 1 || err.Error() != "x:1: larger than 2 MiB: not a thing" {
		t.Fatalf("over the limit: %v", err)
	}
}
