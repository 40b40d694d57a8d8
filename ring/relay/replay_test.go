package relay

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/ring/wire"
)

// recConn records what goes over a connection: every Write as one segment
// (the bytes a sender put on the wire, in order) and every byte read.
type recConn struct {
	net.Conn
	writes [][]byte
	read   bytes.Buffer
}

func (c *recConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.writes = append(c.writes, append([]byte(nil), p[:n]...))
	return n, err
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Write(p[:n])
	return n, err
}

// greetKey sends a Hello with a fresh nonce and runs the sender's side of
// the handshake with key.
func greetKey(c io.ReadWriter, key wire.Key, session, sender string) (*wire.Channel, error) {
	nonce := wire.NewNonce()
	if err := wire.WriteMsg(c, wire.THello, wire.Hello{Version: wire.Version, Session: session, Sender: sender, Nonce: nonce}); err != nil {
		return nil, err
	}
	return wire.AuthConnect(c, key, nonce)
}

// sealedEnd is the End frame of a session, with its MAC under key.
func sealedEnd(key wire.Key, session string) []byte {
	b := make([]byte, wire.HeaderSize)
	wire.Header{Type: wire.TEnd, Flags: wire.FlagMAC}.Put(b)
	return wire.NewFrameMAC(key.SessionKey(session)).Sum(b, b, nil)
}

// recorded is what a genuine sender sent in one session, as it went over
// the wire.
type recorded struct {
	control, data [][]byte
	// challenge is the nonce of the node's Challenge to the genuine
	// control connection.
	challenge []byte
}

// genuineSession runs a whole session (no files) against a keyed node as
// its sender and its upstream would: Hello, authentication and a Setup
// naming the node (Ready), Connect (Connected), a data connection with its
// own handshake carrying the sealed End frame, the Verdict and a Bye. It
// records every byte sent. between, when set, runs after Ready.
func genuineSession(t *testing.T, tn *testNode, dataAddr string, key wire.Key, session string, between func()) recorded {
	t.Helper()
	ctl := &recConn{Conn: dial(t, tn.ctl, 10*time.Second)}
	cch, err := greetKey(ctl, key, session, "genuine-sender")
	if err != nil {
		t.Fatalf("genuine sender: handshake: %v", err)
	}
	setup := wire.Setup{Session: session, Hosts: []string{"127.0.0.1"}, Addrs: []string{"127.0.0.1"}, Server: "genuine-sender", ChunkSize: 1 << 20}
	if err := cch.WriteMsg(wire.TSetup, setup); err != nil {
		t.Fatal(err)
	}
	if err := cch.Expect(wire.TReady, &wire.Ready{}); err != nil {
		t.Fatalf("genuine sender: %v, want Ready", err)
	}
	if between != nil {
		between()
	}
	if err := cch.WriteMsg(wire.TConnect, wire.Connect{}); err != nil {
		t.Fatal(err)
	}
	if err := cch.Expect(wire.TConnected, nil); err != nil {
		t.Fatalf("genuine sender: %v, want Connected", err)
	}

	data := &recConn{Conn: dial(t, dataAddr, 10*time.Second)}
	nonce := wire.NewNonce()
	if err := wire.WriteMsg(data, wire.TDataHello, wire.DataHello{Session: session, From: "genuine-upstream", Nonce: nonce}); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.AuthConnect(data, key, nonce); err != nil {
		t.Fatalf("genuine upstream: handshake: %v", err)
	}
	if _, err := data.Write(sealedEnd(key, session)); err != nil {
		t.Fatal(err)
	}

	for {
		h, body, err := cch.ReadMsg()
		if err != nil {
			t.Fatalf("genuine sender: waiting for the verdict: %v", err)
		}
		if h.Type == wire.TProgress || h.Type == wire.TKeepAlive {
			continue
		}
		var v wire.Verdict
		if err := wire.Decode(h, body, wire.TVerdict, &v); err != nil {
			t.Fatalf("genuine sender: %v, want the verdict", err)
		}
		if v.Error != "" || len(v.Files) != 0 {
			t.Fatalf("genuine sender: verdict %+v, want no error and no files", v)
		}
		break
	}
	if err := cch.WriteMsg(wire.TBye, wire.Bye{Verified: true}); err != nil {
		t.Fatal(err)
	}

	var ch wire.Challenge
	if err := wire.Expect(bytes.NewReader(ctl.read.Bytes()), wire.TChallenge, &ch); err != nil {
		t.Fatalf("the genuine control connection's first answer: %v", err)
	}
	return recorded{control: ctl.writes, data: data.writes, challenge: ch.Nonce}
}

// replay opens a connection to addr and sends the recorded segments
// verbatim: all at once, or (afterChallenge) the first one, then, after the
// node's answer to it, the rest. It returns the messages the node sent
// until it closed the connection, the error that ended them, and the
// connection's local address (the node logs it).
func replay(t *testing.T, addr string, segs [][]byte, afterChallenge bool) (types []wire.Type, bodies [][]byte, end error, local string) {
	t.Helper()
	c := dial(t, addr, 10*time.Second)
	local = c.LocalAddr().String()
	read := func() error {
		h, body, err := wire.ReadMsg(c)
		if err == nil {
			types, bodies = append(types, h.Type), append(bodies, body)
		}
		return err
	}
	rest := segs
	if afterChallenge {
		if _, err := c.Write(segs[0]); err != nil {
			t.Fatalf("replay the first message: %v", err)
		}
		if err := read(); err != nil {
			return types, bodies, err, local
		}
		rest = segs[1:]
	}
	// Writes after the node gave up may fail: it closed the connection.
	_, _ = c.Write(bytes.Join(rest, nil))
	for end == nil {
		end = read()
	}
	return types, bodies, end, local
}

// checkRefused asserts what a replayed handshake got: a Challenge with a
// nonce other than the recorded session's, then a Fail saying the
// authentication failed, and nothing else; then the node closed the
// connection.
func checkRefused(t *testing.T, what string, rec recorded, types []wire.Type, bodies [][]byte, end error) {
	t.Helper()
	if len(types) == 0 || types[0] != wire.TChallenge {
		t.Errorf("%s: the node answered %v, want a Challenge first", what, types)
	} else {
		var ch wire.Challenge
		if err := wire.Decode(wire.Header{Type: types[0]}, bodies[0], wire.TChallenge, &ch); err != nil {
			t.Errorf("%s: %v", what, err)
		}
		if len(ch.Nonce) != wire.NonceSize || bytes.Equal(ch.Nonce, rec.challenge) {
			t.Errorf("%s: the node's challenge %x is not fresh (the recorded one: %x)", what, ch.Nonce, rec.challenge)
		}
	}
	var fail *wire.PeerError
	for i, ty := range types {
		switch ty {
		case wire.TChallenge:
		case wire.TFail:
			err := wire.Decode(wire.Header{Type: ty}, bodies[i], wire.TChallenge, nil)
			if errors.As(err, &fail) && !strings.Contains(fail.Reason, wire.ErrAuth.Error()) {
				t.Errorf("%s: the node failed it for %q, want %q", what, fail.Reason, wire.ErrAuth)
			}
		default:
			t.Errorf("%s: the node answered %v (%s): it must answer nothing but its challenge and the failure", what, ty, bodies[i])
		}
	}
	if fail == nil {
		t.Errorf("%s: the node answered %v, want a Fail for the authentication", what, types)
	}
	if errors.Is(end, os.ErrDeadlineExceeded) {
		t.Errorf("%s: the node did not close the connection within 10s", what)
	} else if !errors.Is(end, io.EOF) && !isReset(end) {
		t.Logf("%s: connection ended with %v", what, end)
	}
}

// waitLogLine waits up to 5 seconds for a log line that mentions local
// (a replaying connection's address) and returns it.
func waitLogLine(t *testing.T, tn *testNode, local string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, l := range strings.Split(tn.log.String(), "\n") {
			if strings.Contains(l, local+" (") {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("no log line about the connection from %s within 5s", local)
			return ""
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitIdle waits up to 3 seconds until a node serving several sessions
// takes a sender again (its last session ended): it is no longer busy,
// and a handshake is not refused as busy. (A busy node whose session a
// sender could resume goes through the handshake before it says busy:
// the handshake alone does not tell.) The probe ends before its Setup and
// is ignored.
func waitIdle(t *testing.T, tn *testNode, key wire.Key) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		for tn.node.busy.Load() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		c := dial(t, tn.ctl, 2*time.Second)
		_, err := greetKey(c, key, "probe", "probe")
		c.Close()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node still refuses senders 3s after its session ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReplayedHandshake: an eavesdropper who recorded every byte a genuine
// sender and its upstream sent in a keyed session (control handshake,
// Setup, Connect, Bye; data handshake and the sealed End frame) and
// replays them verbatim, to a fresh node with the same key or to the same
// node once its session ended, gets nowhere: the node's challenge is
// fresh, so the recorded proof fails. The node answers nothing but its
// challenge and "auth failed", closes the connection, logs why, never
// says Ready, is not used up, and takes the genuine sender that comes next
// (whose data connection, not the replayed one, feeds the session).
func TestReplayedHandshake(t *testing.T) {
	key := wire.Key("replay-test-ring-key")
	const session = "s-replayed"
	modes := []struct {
		name           string
		afterChallenge bool
	}{
		{"all at once", false},
		{"after the challenge", true},
	}
	for _, tc := range []struct {
		name     string
		sameNode bool // replay to the recorded node (serving several sessions)
	}{
		{"fresh node", false},
		{"same node", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tn *testNode
			var dataAddr string
			var rec recorded
			if tc.sameNode {
				tn = startNode(t, Config{Key: key})
				dataAddr = tn.data
				rec = genuineSession(t, tn, dataAddr, key, session, nil)
				waitIdle(t, tn, key)
			} else {
				recNode := startNode(t, Config{Key: key, Once: true})
				rec = genuineSession(t, recNode, recNode.data, key, session, nil)
				if err := recNode.wait(t, 5*time.Second); err != nil {
					t.Fatalf("the recorded session: Serve returned %v, want nil", err)
				}
				tn = startNode(t, Config{Key: key, Once: true})
				dataAddr = tn.data
			}
			if len(rec.control) < 3 || len(rec.data) < 3 {
				t.Fatalf("recorded %d control and %d data writes, want at least 3 each (hello, auth, setup or frames)", len(rec.control), len(rec.data))
			}

			for _, m := range modes {
				types, bodies, end, local := replay(t, tn.ctl, rec.control, m.afterChallenge)
				what := "control replay, " + m.name
				checkRefused(t, what, rec, types, bodies, end)
				l := waitLogLine(t, tn, local)
				if !strings.Contains(l, "ignored") || !strings.Contains(l, wire.ErrAuth.Error()) || !strings.Contains(l, "still waiting for a sender") {
					t.Errorf("%s: the node logged %q, want it ignored for %q", what, l, wire.ErrAuth)
				}
			}
			select {
			case err := <-tn.done:
				t.Fatalf("Serve returned %v after replayed handshakes: the node is used up", err)
			default:
			}

			// The genuine sender still gets in, and the data connection
			// replayed while its session waits for its upstream is
			// refused as well.
			genuineSession(t, tn, dataAddr, key, session, func() {
				for _, m := range modes {
					types, bodies, end, local := replay(t, dataAddr, rec.data, m.afterChallenge)
					what := "data replay, " + m.name
					checkRefused(t, what, rec, types, bodies, end)
					l := waitLogLine(t, tn, local)
					if !strings.Contains(l, wire.ErrAuth.Error()) || !strings.HasSuffix(l, "closed") {
						t.Errorf("%s: the node logged %q, want it closed for %q", what, l, wire.ErrAuth)
					}
				}
			})
			if tc.sameNode {
				deadline := time.Now().Add(5 * time.Second)
				for strings.Count(tn.log.String(), "session "+session+" done") < 2 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if got := strings.Count(tn.log.String(), "session "+session+" done"); got != 2 {
					t.Errorf("%d sessions logged as done, want 2 (the recorded one and the genuine one after the replays)", got)
				}
			} else if err := tn.wait(t, 5*time.Second); err != nil {
				t.Errorf("after the replays and a genuine session, Serve returned %v, want nil", err)
			}
			if strings.Contains(tn.log.String(), "second data connection") {
				t.Errorf("a replayed data connection took the session's upstream:\n%s", tn.log)
			}
			if t.Failed() {
				return
			}
			t.Logf("node log:\n%s", tn.log)
		})
	}
}
