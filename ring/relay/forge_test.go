package relay

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/ring/wire"
)

// tamperConn is a recorded connection that, once armed, changes one byte
// of the next message's body on its way out (a man in the middle).
type tamperConn struct {
	*recConn
	armed bool
}

func (c *tamperConn) Write(p []byte) (int, error) {
	if c.armed && len(p) > wire.HeaderSize+1 {
		c.armed = false
		p = bytes.Clone(p)
		p[wire.HeaderSize+1] ^= 0x20
	}
	return c.recConn.Write(p)
}

// TestForgedControlFrames: after the handshake every message a keyed
// node takes carries a MAC under its connection's key and its place in
// the connection's order. A sender's message replayed on the same
// connection, one sent without a MAC, and one changed in flight are each
// refused: the node ends the session, logs why, and writes nothing.
func TestForgedControlFrames(t *testing.T) {
	key := wire.Key("forge-test-ring-key")
	for _, tc := range []struct {
		name string
		// send sends the frame where the node expects Connect; setup is
		// the sealed Setup frame as it was sent.
		send func(c *tamperConn, ch *wire.Channel, setup []byte) error
		want string
	}{
		{"replayed Setup", func(c *tamperConn, _ *wire.Channel, setup []byte) error {
			_, err := c.Conn.Write(setup)
			return err
		}, "forged or replayed Setup frame"},
		{"plain Connect", func(c *tamperConn, _ *wire.Channel, _ []byte) error {
			return wire.WriteMsg(c.Conn, wire.TConnect, wire.Connect{})
		}, "a Connect frame without a MAC"},
		{"Connect changed in flight", func(c *tamperConn, ch *wire.Channel, _ []byte) error {
			c.armed = true
			return ch.WriteMsg(wire.TConnect, wire.Connect{Fanout: 1})
		}, "forged or replayed Connect frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := startNode(t, Config{Key: key, Once: true})
			out := t.TempDir() + "/out.img"
			ctl := &tamperConn{recConn: &recConn{Conn: dial(t, tn.ctl, 10*time.Second)}}
			ch, err := greetKey(ctl, key, "s-forged", "test-sender")
			if err != nil {
				t.Fatal(err)
			}
			setup := wire.Setup{Session: "s-forged", Hosts: []string{"127.0.0.1"}, Addrs: []string{"127.0.0.1"}, Server: "test-sender", ChunkSize: 1 << 20,
				Files: []wire.SetupFile{{Output: out, InputName: "in.img", Size: 10, DataSize: 10}}}
			if err := ch.WriteMsg(wire.TSetup, setup); err != nil {
				t.Fatal(err)
			}
			sealedSetup := ctl.writes[len(ctl.writes)-1]
			if err := ch.Expect(wire.TReady, &wire.Ready{}); err != nil {
				t.Fatalf("%v, want Ready", err)
			}
			if err := tc.send(ctl, ch, sealedSetup); err != nil {
				t.Fatal(err)
			}
			err = tn.wait(t, 10*time.Second)
			if err == nil || !errors.Is(err, wire.ErrAuth) {
				t.Errorf("Serve returned %v, want the session failed for an auth failure", err)
			}
			if log := tn.log.String(); !strings.Contains(log, tc.want) || !strings.Contains(log, "session failed") {
				t.Errorf("the node's log does not say the session failed for %q:\n%s", tc.want, log)
			}
			if _, err := statFile(out); err == nil {
				t.Errorf("the node wrote %s", out)
			}
		})
	}
}

func statFile(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
