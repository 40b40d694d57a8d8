package httpboot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/internal/logging"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// memStore is a map-backed inventory.Store.
type memStore struct {
	mu  sync.Mutex
	inv *inventory.Inventory
	st  map[string]inventory.Status
}

func newMemStore(inv *inventory.Inventory) *memStore {
	return &memStore{inv: inv, st: map[string]inventory.Status{}}
}

func (m *memStore) get(name string) (inventory.Status, error) {
	n, ok := m.inv.ByName(name)
	if !ok {
		return inventory.Status{}, fmt.Errorf("no node %q", name)
	}
	s, ok := m.st[name]
	if !ok {
		s = inventory.Status{State: contract.StateUnknown}
	}
	s.Name, s.MAC, s.Rack = n.Name, n.MAC.String(), n.Rack
	if n.IP.IsValid() {
		s.IP = n.IP.String()
	}
	return s, nil
}

func (m *memStore) Get(name string) (inventory.Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.get(name)
}

func (m *memStore) List() ([]inventory.Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []inventory.Status
	for _, n := range m.inv.Nodes {
		s, err := m.get(n.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (m *memStore) Update(name string, fn func(*inventory.Status) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.get(name)
	if err != nil {
		return err
	}
	if err := fn(&s); err != nil {
		return err
	}
	m.st[name] = s
	return nil
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func testInventory() *inventory.Inventory {
	return &inventory.Inventory{
		File:   "/etc/herd/inventory",
		Subnet: netip.MustParsePrefix("10.0.0.0/24"),
		Nodes: []inventory.Node{
			{MAC: mustMAC("52:54:00:00:00:01"), Name: "n1", IP: netip.MustParseAddr("10.0.0.11"), Plan: "compute.ks", Profile: "compute", Line: 1},
			{MAC: mustMAC("52:54:00:00:00:02"), Name: "n2", IP: netip.MustParseAddr("10.0.0.12"), Line: 2},
			{MAC: mustMAC("52:54:00:00:00:0a"), Name: "gpu-3.rack2", Line: 3}, // no reserved address
		},
	}
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	h       *Handler
	store   *memStore
	root    string
	outside string
	files   map[string][]byte
	log     *bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{root: filepath.Join(dir, "boot"), outside: filepath.Join(dir, "secret"), files: map[string][]byte{}, log: &bytes.Buffer{}}
	for _, d := range []string{f.root, f.outside, filepath.Join(f.root, "images")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := make([]byte, 100_000)
	for i := range img {
		img[i] = byte(i * 7)
	}
	for name, data := range map[string][]byte{
		"vmlinuz":           []byte("kernel image"),
		"initramfs.cpio.gz": []byte("initramfs"),
		"images/golden.img": img,
	} {
		f.files[name] = data
		if err := os.WriteFile(filepath.Join(f.root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.outside, "secret.txt"), []byte("do not serve"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"link-out":    filepath.Join(f.outside, "secret.txt"),
		"link-up":     "../secret/secret.txt",
		"images/up":   "../../secret",
		"link-passwd": "/etc/passwd",
		"link-in":     "vmlinuz",
	} {
		if err := os.Symlink(target, filepath.Join(f.root, link)); err != nil {
			t.Fatal(err)
		}
	}
	inv := testInventory()
	f.store = newMemStore(inv)
	var mu sync.Mutex
	h, err := New(Config{
		Root: f.root, Inventory: inv, Store: f.store, BaseURL: "http://10.0.0.1:8080/",
		KernelArgs: "console=ttyS0,115200",
		Log: logging.Func(func(line string) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintln(f.log, line)
		}),
		Now: func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	f.h = h
	return f
}

// do runs one request through the handler.
func (f *fixture) do(t *testing.T, method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	return w
}

func (f *fixture) state(t *testing.T, name string) inventory.Status {
	t.Helper()
	s, err := f.store.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const installN1 = `#!ipxe
# herd: install n1 (52:54:00:00:00:01)
echo herd: installing n1 (52:54:00:00:00:01) from http://10.0.0.1:8080
kernel http://10.0.0.1:8080/files/vmlinuz initrd=initramfs.cpio.gz herd.url=http://10.0.0.1:8080 herd.mac=52:54:00:00:00:01 herd.name=n1 BOOTIF=01-52-54-00-00-00-01 console=ttyS0,115200
initrd http://10.0.0.1:8080/files/initramfs.cpio.gz
boot
`

const localN1 = `#!ipxe
# herd: n1 (52:54:00:00:00:01) is installed: boot from the local disk
echo herd: n1 (52:54:00:00:00:01) boots from its disk
iseq ${platform} efi && exit 1 ||
exit
`

func TestIPXEScriptRoute(t *testing.T) {
	f := newFixture(t)
	for _, mac := range []string{"52:54:00:00:00:01", "52-54-00-00-00-01", "52:54:00:00:00:01", "52-54-00-00-00-01"} {
		w := f.do(t, "GET", "/boot/"+mac+".ipxe", "")
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", mac, w.Code, w.Body)
		}
		if d := cmp.Diff(installN1, w.Body.String()); d != "" {
			t.Errorf("%s: install script (-want +got):\n%s", mac, d)
		}
	}
	if w := f.do(t, "GET", "/boot/52:54:00:00:00:0A.ipxe", ""); w.Code != 200 || !strings.Contains(w.Body.String(), "herd.name=gpu-3.rack2 ") {
		t.Errorf("upper-case MAC: %d\n%s", w.Code, w.Body)
	}
	st := f.state(t, "n1")
	if st.State != contract.StateBooting || !st.LastReport.Equal(testNow) || st.LocalBoot {
		t.Errorf("after the script: %+v, want booting at %v", st, testNow)
	}

	w := f.do(t, "GET", "/boot/52:54:00:99:99:99.ipxe", "")
	if w.Code != 200 || !strings.HasPrefix(w.Body.String(), "#!ipxe\n") || !strings.Contains(w.Body.String(), "52:54:00:99:99:99 is not in /etc/herd/inventory") || !strings.HasSuffix(w.Body.String(), "iseq ${platform} efi && exit 1 ||\nexit\n") {
		t.Errorf("unknown MAC: %d\n%s", w.Code, w.Body)
	}
	for target, code := range map[string]int{
		"/boot/52:54:00:00:00:01":        404,
		"/boot/52:54:00:00:00:01.efi":    404,
		"/boot/52:54:00:00:00.ipxe":      400,
		"/boot/52:54-00:00:00:01.ipxe":   400,
		"/boot/525400000001.ipxe":        400,
		"/boot/zz:54:00:00:00:01.ipxe":   400,
		"/boot/52:54:00:00:00:01.ipxe/x": 404,
	} {
		if w := f.do(t, "GET", target, ""); w.Code != code {
			t.Errorf("GET %s: %d, want %d", target, w.Code, code)
		}
	}
	if w := f.do(t, "POST", "/boot/52:54:00:00:00:01.ipxe", ""); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST a script: %d, want 405", w.Code)
	}
}

func postJSON(t *testing.T, f *fixture, target string, v any) *httptest.ResponseRecorder {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return f.do(t, "POST", target, string(b), "Content-Type", "application/json")
}

// TestInstallCycle follows n1 from its first boot to the flip to local
// boot and back after a reinstall.
func TestInstallCycle(t *testing.T) {
	f := newFixture(t)
	get := func() string { return f.do(t, "GET", "/boot/52:54:00:00:00:01.ipxe", "").Body.String() }
	pxe := func() string { return f.do(t, "GET", "/pxelinux.cfg/01-52-54-00-00-00-01", "").Body.String() }
	if s := get(); s != installN1 {
		t.Fatalf("first boot:\n%s", s)
	}
	w := postJSON(t, f, "/api/register", contract.RegisterRequest{MAC: "52:54:00:00:00:01", IP: "10.0.0.11", AgentVersion: "0.1", Firmware: contract.FirmwareUEFI})
	if w.Code != 200 {
		t.Fatalf("register: %d %s", w.Code, w.Body)
	}
	var reg contract.RegisterResponse
	if err := json.Unmarshal(w.Body.Bytes(), &reg); err != nil {
		t.Fatal(err)
	}
	want := contract.RegisterResponse{Name: "n1", IP: "10.0.0.11", Plan: "compute.ks", Profile: "compute",
		Ring: contract.Ring{Server: "10.0.0.1", DataPort: 9998, ControlPort: 9997, ReportPort: 9996}}
	if d := cmp.Diff(want, reg); d != "" {
		t.Errorf("register response (-want +got):\n%s", d)
	}
	if st := f.state(t, "n1"); st.State != contract.StateRegistered || st.Firmware != contract.FirmwareUEFI {
		t.Errorf("after register: %s, firmware %q; want registered, uefi", st.State, st.Firmware)
	}
	for _, rep := range []contract.ReportRequest{
		{MAC: "52:54:00:00:00:01", State: "installing", Bytes: 1 << 20, Rate: 5e6, Message: "writing /dev/vda"},
		{MAC: "52:54:00:00:00:01", State: "installing", Bytes: 8 << 20, Rate: 6e6},
	} {
		if w := postJSON(t, f, "/api/report", rep); w.Code != 200 {
			t.Fatalf("report %+v: %d %s", rep, w.Code, w.Body)
		}
	}
	st := f.state(t, "n1")
	if st.State != contract.StateInstalling || st.Bytes != 8<<20 || st.Rate != 6e6 || st.Message != "writing /dev/vda" {
		t.Errorf("installing: %+v", st)
	}
	if s := get(); s != installN1 {
		t.Errorf("while installing:\n%s", s)
	}
	w = postJSON(t, f, "/api/report", contract.ReportRequest{MAC: "52-54-00-00-00-01", State: "done", Bytes: 16 << 20, Rate: 7e6, Message: "verified"})
	if w.Code != 200 {
		t.Fatalf("report done: %d %s", w.Code, w.Body)
	}
	var got inventory.Status
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.State != contract.StateDone || !got.LocalBoot || got.Bytes != 16<<20 {
		t.Errorf("report done answered %+v", got)
	}
	if s := get(); s != localN1 {
		t.Errorf("after done: want the local script, got:\n%s", s)
	}
	if s := pxe(); !strings.Contains(s, "DEFAULT local\n") {
		t.Errorf("pxelinux after done:\n%s", s)
	}
	if st := f.state(t, "n1"); st.State != contract.StateDone {
		t.Errorf("a done node that boots stays done, got %s", st.State)
	}
	// `herd nodes reinstall n1`, as the file-backed store does it.
	if err := f.store.Update("n1", func(s *inventory.Status) error {
		s.State, s.LocalBoot, s.Reason = contract.StateUnknown, false, ""
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if s := get(); s != installN1 {
		t.Errorf("after reinstall: want the install script, got:\n%s", s)
	}
	if s := pxe(); !strings.Contains(s, "DEFAULT install\n") {
		t.Errorf("pxelinux after reinstall:\n%s", s)
	}
	// A failure: the next boot installs again, with the reason shown.
	postJSON(t, f, "/api/register", contract.RegisterRequest{MAC: "52:54:00:00:00:01"})
	w = postJSON(t, f, "/api/report", contract.ReportRequest{MAC: "52:54:00:00:00:01", State: "failed", Reason: "disk /dev/vda not found"})
	if st := f.state(t, "n1"); w.Code != 200 || st.State != contract.StateFailed || st.LocalBoot || st.Reason != "disk /dev/vda not found" {
		t.Errorf("after failed: %d %+v", w.Code, st)
	}
	if s := get(); s != installN1 {
		t.Errorf("after failed: want the install script, got:\n%s", s)
	}
}

func TestPxelinux(t *testing.T) {
	f := newFixture(t)
	w := f.do(t, "GET", "/pxelinux.cfg/01-52-54-00-00-00-01", "")
	want := `# herd: n1 (52:54:00:00:00:01)
DEFAULT install
PROMPT 1
TIMEOUT 50
LABEL local
  LOCALBOOT 0
LABEL install
  KERNEL vmlinuz
  APPEND initrd=initramfs.cpio.gz herd.url=http://10.0.0.1:8080 herd.mac=52:54:00:00:00:01 herd.name=n1 BOOTIF=01-52-54-00-00-00-01 console=ttyS0,115200
`
	if d := cmp.Diff(want, w.Body.String()); w.Code != 200 || d != "" {
		t.Errorf("%d (-want +got):\n%s", w.Code, d)
	}
	if st := f.state(t, "n1"); st.State != contract.StateBooting {
		t.Errorf("after the config: %s", st.State)
	}
	for target, code := range map[string]int{
		"/pxelinux.cfg/01-52-54-00-99-99-99": 404, // pxelinux goes on to the next name
		"/pxelinux.cfg/0A00000B":             404,
		"/pxelinux.cfg/52-54-00-00-00-01":    404,
		"/pxelinux.cfg/01-52:54:00:00:00:01": 200,
		"/pxelinux.cfg/default":              200,
	} {
		if w := f.do(t, "GET", target, ""); w.Code != code {
			t.Errorf("GET %s: %d, want %d", target, w.Code, code)
		}
	}
	if s := f.do(t, "GET", "/pxelinux.cfg/default", "").Body.String(); s != string(localConfig) {
		t.Errorf("default without a file:\n%s", s)
	}

	// The TFTP hook hands out the same configs.
	remote := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 11), Port: 2070}
	data, ok := f.h.PxelinuxFile(remote, "pxelinux.cfg/01-52-54-00-00-00-01")
	if !ok || string(data) != want {
		t.Errorf("PxelinuxFile: %v\n%s", ok, data)
	}
	for _, name := range []string{"pxelinux.0", "pxelinux.cfg/01-52-54-00-99-99-99", "pxelinux.cfg/x/01-52-54-00-00-00-01", "vmlinuz"} {
		if _, ok := f.h.PxelinuxFile(remote, name); ok {
			t.Errorf("PxelinuxFile(%q): ok", name)
		}
	}
	if data, ok := f.h.PxelinuxFile(remote, "pxelinux.cfg/default"); !ok || string(data) != string(localConfig) {
		t.Errorf("PxelinuxFile(default) without a file: %v %s", ok, data)
	}
	// With the boot tree's own default, HTTP serves it and TFTP leaves it
	// to the file server.
	if err := os.MkdirAll(filepath.Join(f.root, "pxelinux.cfg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.root, "pxelinux.cfg", "default"), []byte("DEFAULT menu\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s := f.do(t, "GET", "/pxelinux.cfg/default", "").Body.String(); s != "DEFAULT menu\n" {
		t.Errorf("default from the tree: %q", s)
	}
	if _, ok := f.h.PxelinuxFile(remote, "pxelinux.cfg/default"); ok {
		t.Error("PxelinuxFile(default) with a file: ok")
	}
}

func TestBootEntryErrors(t *testing.T) {
	node := testInventory().Nodes[0]
	b := Boot{Node: node, BaseURL: "http://h", Kernel: "k", Initrd: "i"}
	for name, mod := range map[string]func(*Boot){
		"bad name":        func(b *Boot) { b.Node.Name = "n1\nboot" },
		"no MAC":          func(b *Boot) { b.Node.MAC = nil },
		"two-line args":   func(b *Boot) { b.KernelArgs = "a\nchain http://evil" },
		"empty node name": func(b *Boot) { b.Node.Name = "" },
	} {
		bb := b
		mod(&bb)
		if _, err := IPXEScript(bb); err == nil {
			t.Errorf("IPXEScript with %s: no error", name)
		}
		if _, err := PxelinuxConfig(bb); err == nil {
			t.Errorf("PxelinuxConfig with %s: no error", name)
		}
	}
}

func TestNewErrors(t *testing.T) {
	inv := testInventory()
	st := newMemStore(inv)
	dir := t.TempDir()
	good := Config{Root: dir, Inventory: inv, Store: st, BaseURL: "http://10.0.0.1:8080"}
	for name, mod := range map[string]func(*Config){
		"no inventory":     func(c *Config) { c.Inventory = nil },
		"no store":         func(c *Config) { c.Store = nil },
		"no root":          func(c *Config) { c.Root = "" },
		"missing root":     func(c *Config) { c.Root = filepath.Join(dir, "nope") },
		"no base URL":      func(c *Config) { c.BaseURL = "" },
		"relative URL":     func(c *Config) { c.BaseURL = "10.0.0.1:8080" },
		"ftp URL":          func(c *Config) { c.BaseURL = "ftp://10.0.0.1" },
		"kernel outside":   func(c *Config) { c.Kernel = "../vmlinuz" },
		"initrd spaces":    func(c *Config) { c.Initrd = "a b" },
		"two-line args":    func(c *Config) { c.KernelArgs = "quiet\nboot" },
		"URL with a space": func(c *Config) { c.BaseURL = "http://10.0.0.1:8080/a b" },
	} {
		c := good
		mod(&c)
		if h, err := New(c); err == nil {
			h.Close()
			t.Errorf("New with %s: no error", name)
		}
	}
	h, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
}

func TestFiles(t *testing.T) {
	f := newFixture(t)
	img := f.files["images/golden.img"]
	for _, tc := range []struct {
		name, target, rng string
		code              int
		body              []byte
		cr                string // Content-Range of a 206
	}{
		{"whole", "/files/images/golden.img", "", 200, img, ""},
		{"kernel", "/files/vmlinuz", "", 200, f.files["vmlinuz"], ""},
		{"symlink inside", "/files/link-in", "", 200, f.files["vmlinuz"], ""},
		{"range", "/files/images/golden.img", "bytes=10-19", 206, img[10:20], "bytes 10-19/100000"},
		{"open range", "/files/images/golden.img", "bytes=99990-", 206, img[99990:], "bytes 99990-99999/100000"},
		{"suffix range", "/files/images/golden.img", "bytes=-5", 206, img[len(img)-5:], "bytes 99995-99999/100000"},
		{"range past the end", "/files/images/golden.img", "bytes=100000-100010", 416, nil, ""},
		{"range far past the end", "/files/images/golden.img", "bytes=5000000-", 416, nil, ""},
		{"missing", "/files/nothing", "", 404, nil, ""},
		{"directory", "/files/images", "", 404, nil, ""},
		{"directory slash", "/files/images/", "", 404, nil, ""},
		{"root", "/files/", "", 404, nil, ""},
		{"escaped dotdot", "/files/%2e%2e/secret/secret.txt", "", 403, nil, ""},
		{"escaped slashes", "/files/images%2f..%2f..%2fsecret%2fsecret.txt", "", 403, nil, ""},
		{"dotdot staying inside", "/files/images/%2e%2e/vmlinuz", "", 403, nil, ""},
		{"symlink absolute outside", "/files/link-out", "", 403, nil, ""},
		{"symlink relative outside", "/files/link-up", "", 403, nil, ""},
		{"symlink dir outside", "/files/images/up/secret.txt", "", 403, nil, ""},
		{"symlink passwd", "/files/link-passwd", "", 403, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.rng != "" {
				hdr = []string{"Range", tc.rng}
			}
			w := f.do(t, "GET", tc.target, "", hdr...)
			if w.Code != tc.code {
				t.Fatalf("GET %s (%s): %d, want %d: %s", tc.target, tc.rng, w.Code, tc.code, w.Body)
			}
			if tc.body != nil && !bytes.Equal(w.Body.Bytes(), tc.body) {
				t.Errorf("body: %d bytes, want %d", w.Body.Len(), len(tc.body))
			}
			if bytes.Contains(w.Body.Bytes(), []byte("do not serve")) {
				t.Error("served the secret")
			}
			if got := w.Header().Get("Content-Range"); tc.cr != "" && got != tc.cr {
				t.Errorf("Content-Range %q, want %q", got, tc.cr)
			}
		})
	}
	if w := f.do(t, "HEAD", "/files/images/golden.img", ""); w.Code != 200 || w.Header().Get("Content-Length") != "100000" || w.Header().Get("Accept-Ranges") != "bytes" {
		t.Errorf("HEAD: %d %v", w.Code, w.Header())
	}
}

// TestFilesOverTheWire sends "../" as a client would, unnormalised, to a
// real server.
func TestFilesOverTheWire(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	for _, p := range []string{"/files/../secret/secret.txt", "/files/images/../../secret/secret.txt", "/files/./../secret/secret.txt", "/files/%2e%2e/secret/secret.txt", "/files/..%2fsecret%2fsecret.txt"} {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", p)
		resp, _ := io.ReadAll(c)
		c.Close()
		status, _, _ := strings.Cut(string(resp), "\r\n")
		t.Logf("GET %s: %s", p, status)
		if strings.Contains(status, " 200 ") || strings.Contains(string(resp), "do not serve") {
			t.Errorf("GET %s: %s", p, status)
		}
	}
	// Range through the real server and client.
	req, _ := http.NewRequest("GET", srv.URL+"/files/images/golden.img", nil)
	req.Header.Set("Range", "bytes=1000-1999")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || !bytes.Equal(body, f.files["images/golden.img"][1000:2000]) {
		t.Errorf("range over the wire: %s, %d bytes", resp.Status, len(body))
	}
}

func TestAPIErrors(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name, target, body string
		code               int
		err                string
	}{
		{"unknown MAC", "/api/register", `{"mac":"52:54:00:99:99:99"}`, 404, "MAC 52:54:00:99:99:99 is not in the inventory"},
		{"report unknown MAC", "/api/report", `{"mac":"52:54:00:99:99:99","state":"done"}`, 404, "not in the inventory"},
		{"mac missing", "/api/register", `{"name":"n1"}`, 400, `field "mac": required`},
		{"mac a number", "/api/register", `{"mac":5}`, 400, `field "mac": want a JSON string, got number`},
		{"mac malformed", "/api/register", `{"mac":"52:54"}`, 400, `field "mac": MAC "52:54"`},
		{"ip malformed", "/api/register", `{"mac":"52:54:00:00:00:01","ip":"10.0.0"}`, 400, `field "ip"`},
		{"firmware unknown", "/api/register", `{"mac":"52:54:00:00:00:01","firmware":"openfirmware"}`, 400, `field "firmware": "openfirmware": want "uefi", "bios" or nothing`},
		{"name conflict", "/api/register", `{"mac":"52:54:00:00:00:01","name":"n2"}`, 409, "is node n1 in the inventory, not n2"},
		{"syntax", "/api/register", `{"mac":`, 400, "truncated JSON"},
		{"garbage", "/api/register", `{"mac" "x"}`, 400, "malformed JSON at byte"},
		{"empty", "/api/register", ``, 400, "empty body"},
		{"array", "/api/register", `[1]`, 400, "want a JSON object"},
		{"two values", "/api/register", `{"mac":"52:54:00:00:00:01"} {}`, 400, "more than one JSON value"},
		{"bytes a string", "/api/report", `{"mac":"52:54:00:00:00:01","state":"installing","bytes":"x"}`, 400, `field "bytes"`},
		{"rate a string", "/api/report", `{"mac":"52:54:00:00:00:01","state":"installing","rate":"fast"}`, 400, `field "rate"`},
		{"negative bytes", "/api/report", `{"mac":"52:54:00:00:00:01","state":"installing","bytes":-1}`, 400, `field "bytes": negative`},
		{"state missing", "/api/report", `{"mac":"52:54:00:00:00:01"}`, 400, `field "state": required`},
		{"state unknown", "/api/report", `{"mac":"52:54:00:00:00:01","state":"registered"}`, 400, `field "state": want installing, done or failed, got "registered"`},
		{"too big", "/api/register", `{"mac":"52:54:00:00:00:01","agent_version":"` + strings.Repeat("x", maxBody) + `"}`, 413, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(t, "POST", tc.target, tc.body, "Content-Type", "application/json")
			var e apiError
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
				t.Fatalf("%d, not a JSON error: %v\n%s", w.Code, err, w.Body)
			}
			if w.Code != tc.code || !strings.Contains(e.Error, tc.err) {
				t.Errorf("%d %q, want %d %q", w.Code, e.Error, tc.code, tc.err)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	if w := f.do(t, "GET", "/api/register", ""); w.Code != 405 {
		t.Errorf("GET /api/register: %d, want 405", w.Code)
	}
	for _, n := range []string{"n1", "n2", "gpu-3.rack2"} {
		if st := f.state(t, n); st.State != contract.StateUnknown {
			t.Errorf("%s changed by refused requests: %+v", n, st)
		}
	}
}

func TestAPINodes(t *testing.T) {
	f := newFixture(t)
	// gpu-3.rack2 registers without having fetched a script from herd,
	// and tells its DHCP address (no reservation in the inventory).
	w := postJSON(t, f, "/api/register", contract.RegisterRequest{MAC: "52:54:00:00:00:0A", Name: "gpu-3.rack2", IP: "10.0.0.150"})
	if w.Code != 200 {
		t.Fatalf("register: %d %s", w.Code, w.Body)
	}
	var reg contract.RegisterResponse
	json.Unmarshal(w.Body.Bytes(), &reg)
	if reg.IP != "10.0.0.150" || reg.Name != "gpu-3.rack2" {
		t.Errorf("register response %+v", reg)
	}
	// n2 reports done without a register or installing report herd saw.
	if w := postJSON(t, f, "/api/report", contract.ReportRequest{MAC: "52:54:00:00:00:02", State: "done", Bytes: 42}); w.Code != 200 {
		t.Fatalf("report: %d %s", w.Code, w.Body)
	}
	w = f.do(t, "GET", "/api/nodes", "")
	var list []inventory.Status
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || w.Code != 200 {
		t.Fatalf("%d %v\n%s", w.Code, err, w.Body)
	}
	want := []inventory.Status{
		{Name: "n1", MAC: "52:54:00:00:00:01", IP: "10.0.0.11", State: contract.StateUnknown},
		{Name: "n2", MAC: "52:54:00:00:00:02", IP: "10.0.0.12", State: contract.StateDone, Bytes: 42, LocalBoot: true, LastReport: testNow,
			Step: contract.StepRebooting, StepSince: testNow, Total: 42},
		{Name: "gpu-3.rack2", MAC: "52:54:00:00:00:0a", IP: "10.0.0.150", State: contract.StateRegistered, LastReport: testNow, Message: "agent registered",
			Step: contract.StepRegistered, StepSince: testNow},
	}
	if d := cmp.Diff(want, list); d != "" {
		t.Errorf("/api/nodes (-want +got):\n%s", d)
	}
	w = f.do(t, "GET", "/api/nodes/n2", "")
	var one inventory.Status
	if err := json.Unmarshal(w.Body.Bytes(), &one); err != nil || w.Code != 200 {
		t.Fatalf("%d %v", w.Code, err)
	}
	if d := cmp.Diff(want[1], one); d != "" {
		t.Errorf("/api/nodes/n2 (-want +got):\n%s", d)
	}
	if w := f.do(t, "GET", "/api/nodes/n9", ""); w.Code != 404 || !strings.Contains(w.Body.String(), `"error"`) {
		t.Errorf("/api/nodes/n9: %d %s", w.Code, w.Body)
	}
}

// TestMetrics: GET /metrics in Prometheus's text format, parsed by
// Prometheus's own parser: the nodes per state and each node's gauges
// from the store.
func TestMetrics(t *testing.T) {
	f := newFixture(t)
	f.do(t, "GET", "/boot/52:54:00:00:00:01.ipxe", "")
	postJSON(t, f, "/api/report", contract.ReportRequest{MAC: "52:54:00:00:00:02", State: "installing", Bytes: 123456, Rate: 2.5e6})
	w := f.do(t, "GET", "/metrics", "")
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("%d %s", w.Code, w.Header().Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(strings.NewReader(w.Body.String()))
	if err != nil {
		t.Fatalf("Prometheus's parser: %v\n%s", err, w.Body)
	}
	values := map[string]float64{}
	for name, fam := range families {
		for _, m := range fam.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += fmt.Sprintf("{%s=%q}", l.GetName(), l.GetValue())
			}
			if g := m.GetGauge(); g != nil {
				values[key] = g.GetValue()
			}
		}
	}
	for key, want := range map[string]float64{
		`herd_nodes{state="unknown"}`:                       1,
		`herd_nodes{state="booting"}`:                       1,
		`herd_nodes{state="installing"}`:                    1,
		`herd_nodes{state="done"}`:                          0,
		`herd_nodes{state="failed"}`:                        0,
		`herd_nodes{state="registered"}`:                    0,
		`herd_node_bytes{node="n2"}`:                        123456,
		`herd_node_bytes{node="n1"}`:                        0,
		`herd_node_bytes{node="gpu-3.rack2"}`:               0,
		`herd_node_rate_bytes_per_second{node="n2"}`:        2.5e6,
		`herd_node_rate_bytes_per_second{node="n1"}`:        0,
		`herd_node_local_boot{node="n1"}`:                   0,
		`herd_node_local_boot{node="gpu-3.rack2"}`:          0,
		`herd_node_last_report_seconds{node="n1"}`:          float64(testNow.Unix()),
		`herd_node_last_report_seconds{node="n2"}`:          float64(testNow.Unix()),
		`herd_node_last_report_seconds{node="gpu-3.rack2"}`: 0,
		`herd_node_store_errors`:                            0,
	} {
		got, ok := values[key]
		if !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	// The event metrics are there from the start (the vectors once a
	// label has a value).
	for _, name := range []string{"herd_bytes_total", "herd_install_duration_seconds"} {
		if _, ok := families[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
}

func TestStatusPage(t *testing.T) {
	f := newFixture(t)
	postJSON(t, f, "/api/report", contract.ReportRequest{MAC: "52:54:00:00:00:02", State: "failed", Reason: "<script>alert(1)</script> disk missing"})
	postJSON(t, f, "/api/report", contract.ReportRequest{MAC: "52:54:00:00:00:01", State: "installing", Bytes: 3 << 30, Rate: 100 << 20})
	// What the DHCP server's sighting writes (pxe/services).
	if err := f.store.Update("n2", func(s *inventory.Status) error {
		s.Seen, s.SeenBy = testNow.Add(-75*time.Second), "dhcp bios"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w := f.do(t, "GET", "/", "")
	body := w.Body.String()
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("%d %s", w.Code, w.Header().Get("Content-Type"))
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="2">`,
		"<td>n1</td><td>52:54:00:00:00:01</td><td>10.0.0.11</td><td>installing</td><td>install</td><td class=\"num\">3.0 GiB</td><td class=\"num\">100.0 MiB/s</td><td>never</td><td>0s ago</td>",
		"<td>n2</td>", "<td>failed</td>", "<td>1m ago (dhcp bios)</td>", "&lt;script&gt;alert(1)&lt;/script&gt; disk missing",
		"<td>gpu-3.rack2</td><td>52:54:00:00:00:0a</td><td></td><td>unknown</td><td>install</td><td class=\"num\">0 B</td><td class=\"num\">0 B/s</td><td>never</td><td>never</td>",
		"unknown: 1, installing: 1, failed: 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("status page not escaped")
	}
	if w := f.do(t, "GET", "/nothing", ""); w.Code != 404 {
		t.Errorf("GET /nothing: %d", w.Code)
	}
}

func TestAdvance(t *testing.T) {
	for _, tc := range []struct {
		from, to contract.State
		ok       bool
	}{
		{contract.StateUnknown, contract.StateRegistered, true},
		{contract.StateUnknown, contract.StateDone, true},
		{contract.StateDone, contract.StateRegistered, true},
		{contract.StateFailed, contract.StateInstalling, true},
		{contract.StateInstalling, contract.StateRegistered, true},
		{contract.StateRegistered, contract.StateRegistered, true},
		{contract.StateUnknown, contract.StateFailed, true},
		{contract.StateUnknown, contract.StateUnknown, false},
		{"bogus", contract.StateDone, false},
	} {
		st := inventory.Status{Name: "n", State: tc.from, Bytes: 7}
		err := advance(&st, tc.to, "why", testNow)
		if (err == nil) != tc.ok {
			t.Errorf("%s → %s: %v", tc.from, tc.to, err)
			continue
		}
		if err != nil && st.State != tc.from {
			t.Errorf("%s → %s failed but changed the state to %s", tc.from, tc.to, st.State)
		}
		if err == nil && st.State != tc.to {
			t.Errorf("%s → %s: ended in %s", tc.from, tc.to, st.State)
		}
	}
}

func TestParseMAC(t *testing.T) {
	for in, want := range map[string]string{
		"52:54:00:00:00:01":       "52:54:00:00:00:01",
		"52-54-00-AB-cd-01":       "52:54:00:ab:cd:01",
		"00:11:22:33:44:55:66:77": "00:11:22:33:44:55:66:77",
	} {
		got, err := ParseMAC(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseMAC(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "52:54:00:00:00", "52:54:00-00:00:01", "525400000001", "5254.0000.0001", "52:54:00:00:00:0g", "52:54:00:00:00:001", ":52:54:00:00:00:01", "52:54:00:00:00:01:"} {
		if m, err := ParseMAC(in); err == nil {
			t.Errorf("ParseMAC(%q) = %v, want an error", in, m)
		}
	}
}

func FuzzParseMAC(f *testing.F) {
	for _, s := range []string{"52:54:00:00:00:01", "52-54-00-00-00-01", "AA:BB:CC:DD:EE:FF", "", "::::::", "52:54"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mac, err := ParseMAC(s)
		if err != nil {
			return
		}
		if len(mac) < 6 || len(mac) > 20 {
			t.Fatalf("ParseMAC(%q): %d octets", s, len(mac))
		}
		again, err := ParseMAC(mac.String())
		if err != nil || again.String() != mac.String() {
			t.Fatalf("ParseMAC(%q) = %s does not round-trip: %v", s, mac, err)
		}
		if !strings.EqualFold(strings.ReplaceAll(s, "-", ":"), mac.String()) {
			t.Fatalf("ParseMAC(%q) = %s", s, mac)
		}
	})
}

// FuzzBootPaths sends fuzzed names through the boot routes: no panic, and
// only the statuses the routes promise.
func FuzzBootPaths(f *testing.F) {
	for _, s := range []string{"52:54:00:00:00:01.ipxe", "52-54-00-00-00-01.ipxe", "01-52-54-00-00-00-01", "default", "x.ipxe", "%2e%2e", "01-52:54:00:00:00:0a"} {
		f.Add(s)
	}
	inv := testInventory()
	h, err := New(Config{Root: f.TempDir(), Inventory: inv, Store: newMemStore(inv), BaseURL: "http://10.0.0.1:8080", Now: func() time.Time { return testNow }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, prefix := range []string{"/boot/", "/pxelinux.cfg/"} {
			req, err := http.NewRequest("GET", "http://x"+prefix+s, nil)
			if err != nil {
				return
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			switch w.Code {
			case 200:
				if !strings.HasPrefix(w.Body.String(), "#!ipxe\n") && !strings.HasPrefix(w.Body.String(), "# herd: ") {
					t.Fatalf("GET %s%s: 200 with %q", prefix, s, w.Body)
				}
			case 301, 307, 308, 400, 404, 405:
			default:
				t.Fatalf("GET %s%q: %d", prefix, s, w.Code)
			}
		}
	})
}

// TestPlanRoute: GET /api/plan/{mac} gives a node its inventory plan, or
// the default ("" key) when its line names none, without changing its
// state; registration carries the same plan.
func TestPlanRoute(t *testing.T) {
	f := newFixture(t)
	f.h.cfg.Plans = map[string]ServedPlan{
		"compute.ks": {Name: "compute.ks", Text: "part / --size=100\n"},
		"":           {Name: "default.ks", Text: "part / --size=50\n"},
	}
	for _, tc := range []struct {
		mac  string
		want contract.PlanResponse
	}{
		{"52:54:00:00:00:01", contract.PlanResponse{Name: "n1", Plan: "compute.ks", PlanText: "part / --size=100\n"}},
		{"52-54-00-00-00-02", contract.PlanResponse{Name: "n2", Plan: "default.ks", PlanText: "part / --size=50\n"}},
	} {
		w := f.do(t, "GET", "/api/plan/"+tc.mac, "")
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", tc.mac, w.Code, w.Body)
		}
		var got contract.PlanResponse
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.mac, d)
		}
	}
	if st := f.state(t, "n1"); st.State != contract.StateUnknown {
		t.Errorf("GET /api/plan changed the state to %s", st.State)
	}
	if w := f.do(t, "GET", "/api/plan/52:54:00:99:99:99", ""); w.Code != 404 || !strings.Contains(w.Body.String(), "not in the inventory") {
		t.Errorf("unknown MAC: %d %s", w.Code, w.Body)
	}
	if w := f.do(t, "GET", "/api/plan/nonsense", ""); w.Code != 400 {
		t.Errorf("bad MAC: %d %s", w.Code, w.Body)
	}
	w := postJSON(t, f, "/api/register", contract.RegisterRequest{MAC: "52:54:00:00:00:02"})
	var reg contract.RegisterResponse
	if err := json.Unmarshal(w.Body.Bytes(), &reg); err != nil {
		t.Fatal(err)
	}
	if reg.Plan != "default.ks" || reg.PlanText != "part / --size=50\n" {
		t.Errorf("register: plan %q text %q", reg.Plan, reg.PlanText)
	}
}
