// Package contract is what the herd agent and the management host (herd
// serve, herd pxe) say to each other, and nothing else: the HTTP API's
// paths and JSON bodies, the node states, how the agent joins the ring
// (its ports), and the herd.* kernel arguments the boot entries write and
// the agent reads.
//
// Both sides import it; it imports no server code, so the agent links
// none. The server's handlers live in pxe/httpboot, the agent's client in
// agent, the kernel command line's parser in agent/cmdline.
package contract

import (
	"fmt"
	"net"
	"strings"

	"github.com/herdproject/herd/ring/relay"
)

// The agents' API on herd's HTTP service.
const (
	// PathRegister is POST PathRegister: RegisterRequest → RegisterResponse.
	PathRegister = "/api/register"
	// PathReport is POST PathReport: ReportRequest → the node's status.
	PathReport = "/api/report"
	// PathPlan is GET PathPlan + MAC: → PlanResponse.
	PathPlan = "/api/plan/"
)

// State is a node's place in the install cycle.
type State string

// Node states: unknown → booting → registered → installing → done | failed.
const (
	StateUnknown    State = "unknown"
	StateBooting    State = "booting"    // asked DHCP/TFTP/HTTP for boot files
	StateRegistered State = "registered" // its agent registered
	StateInstalling State = "installing" // receiving / writing
	StateDone       State = "done"       // reported done: boots from disk next
	StateFailed     State = "failed"     // reported failed: installs again next
)

// States are the node states in their order in the cycle (the status
// page's and herd_nodes' order).
var States = []State{StateUnknown, StateBooting, StateRegistered, StateInstalling, StateDone, StateFailed}

// Step is what a node is doing now, finer than its State: the dashboard
// shows it with the time the node has spent in it. The boot services set
// the steps before the agent runs (StepDHCP, StepLoading, StepAgentUp)
// and after the node left the installer (StepDiskBoot, StepBootedDisk);
// the agent may name its own in a ReportRequest.
type Step string

// Node steps, in their order in the cycle.
const (
	StepDHCP       Step = "dhcp"              // its firmware asked DHCP or TFTP for a boot file
	StepLoading    Step = "loading installer" // fetched its install boot entry: kernel and initramfs
	StepAgentUp    Step = "agent up"          // the agent runs: its own DHCP, its plan
	StepRegistered Step = "registered"        // its agent registered and waits for the session
	StepReceiving  Step = "receiving"         // the ring session: receive, write, forward
	StepVerifying  Step = "verifying"         // reading back and hashing what it wrote
	StepBootloader Step = "bootloader"        // customize the installed system, install its bootloader
	StepRebooting  Step = "rebooting"         // reported done, reboots (or kexecs) into the disk
	StepDiskBoot   Step = "booting from disk" // its firmware asked again and got the local-boot entry
	StepBootedDisk Step = "booted from disk"  // the installed system asked DHCP for its address
)

// Steps are the node steps in their order in the cycle.
var Steps = []Step{StepDHCP, StepLoading, StepAgentUp, StepRegistered, StepReceiving, StepVerifying, StepBootloader, StepRebooting, StepDiskBoot, StepBootedDisk}

// Firmware kinds an agent registers with.
const (
	FirmwareUEFI = "uefi"
	FirmwareBIOS = "bios"
)

// Ring tells a registering agent how to take part in the transfer ring:
// where the sender runs and the ports it listens on for it.
type Ring struct {
	// Server is the management host's address, where the sender runs.
	Server      string `json:"server"`
	DataPort    int    `json:"data_port"`
	ControlPort int    `json:"control_port"`
	ReportPort  int    `json:"report_port"`
	// Window is how many bytes of recent stream the node keeps to feed a
	// node behind it again after a bypass, and Chunks the blocks it keeps
	// in flight: herd serve's --window and --chunks, which apply to every
	// process of the ring. 0 = the node's default.
	Window int `json:"window,omitempty"`
	Chunks int `json:"chunks,omitempty"`
}

// WithDefaults fills the ports left 0 with dolly's (relay's): data 9998,
// control 9997, report 9996.
func (r Ring) WithDefaults() Ring {
	if r.DataPort == 0 {
		r.DataPort = relay.DefaultDataPort
	}
	if r.ControlPort == 0 {
		r.ControlPort = relay.DefaultControlPort
	}
	if r.ReportPort == 0 {
		r.ReportPort = relay.DefaultReportPort
	}
	return r
}

// RegisterRequest is POST /api/register's body. MAC is required; Name and
// IP are what the agent believes (the inventory wins; a different name is
// refused with 409).
type RegisterRequest struct {
	MAC          string `json:"mac"`
	Name         string `json:"name,omitempty"`
	IP           string `json:"ip,omitempty"`
	AgentVersion string `json:"agent_version,omitempty"`
	// Firmware is how the node booted: FirmwareUEFI or FirmwareBIOS; ""
	// when the agent does not say (an older agent, or not run as init).
	Firmware string `json:"firmware,omitempty"`
}

// RegisterResponse tells the agent who it is and how to join the ring.
type RegisterResponse struct {
	Name string `json:"name"`
	IP   string `json:"ip"`
	// Plan names the node's install plan; "" = none (the session's
	// files are written as they are).
	Plan string `json:"plan"`
	// PlanText is the plan itself (kickstart, or a ka-deploy description
	// when Plan ends in .desc or .ka).
	PlanText string `json:"plan_text,omitempty"`
	Profile  string `json:"profile,omitempty"`
	Ring     Ring   `json:"ring"`
}

// PlanResponse is GET /api/plan/{mac}'s answer: the node's install plan,
// which the agent carries out (partitions, filesystems) before it
// registers for the session. Plan "" = none.
type PlanResponse struct {
	Name     string `json:"name"`
	Plan     string `json:"plan"`
	PlanText string `json:"plan_text,omitempty"`
}

// ReportRequest is POST /api/report's body.
type ReportRequest struct {
	MAC string `json:"mac"`
	// State is installing, done or failed.
	State State `json:"state"`
	// Bytes written so far and Rate in bytes/s.
	Bytes int64   `json:"bytes"`
	Rate  float64 `json:"rate"`
	// Message is for humans; Reason says why a node failed.
	Message string `json:"message,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Step is what the node does now (one of Steps); "" = the server
	// infers it from State (installing: receiving, done: rebooting;
	// failed keeps the step the node failed in).
	Step Step `json:"step,omitempty"`
	// Total is how many bytes the transfer writes in all, when the agent
	// knows it; 0 = unknown.
	Total int64 `json:"total,omitempty"`
}

// The herd.* kernel arguments (agent/cmdline documents each).
const (
	ArgServer  = "herd.server"
	ArgURL     = "herd.url"
	ArgIf      = "herd.if"
	ArgMAC     = "herd.mac"
	ArgName    = "herd.name"
	ArgRetries = "herd.retries"
	ArgTimeout = "herd.timeout"
	ArgKey     = "herd.key"
	ArgAllow   = "herd.allow"
	ArgKexec   = "herd.kexec"
	ArgDebug   = "herd.debug"
	// ArgBootIF is pxelinux's (IPAPPEND 2) and iPXE's booted NIC.
	ArgBootIF = "BOOTIF"
)

// BootArgs are the herd.* words of a node's install boot entry.
type BootArgs struct {
	// URL is herd's HTTP base URL (herd.url).
	URL string
	// MAC and Name are the node as the inventory knows it (herd.mac,
	// herd.name, and BOOTIF from the MAC).
	MAC  net.HardwareAddr
	Name string
}

// String renders the words: "herd.url=URL herd.mac=MAC herd.name=NAME
// BOOTIF=01-aa-bb-...".
func (b BootArgs) String() string {
	mac := b.MAC.String()
	return fmt.Sprintf("%s=%s %s=%s %s=%s %s=01-%s", ArgURL, b.URL, ArgMAC, mac, ArgName, b.Name, ArgBootIF, strings.ReplaceAll(mac, ":", "-"))
}

// KeyArg is the herd.key= word that gives the agents the ring's key.
func KeyArg(key string) string { return ArgKey + "=" + key }
