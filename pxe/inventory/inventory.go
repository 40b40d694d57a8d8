// Package inventory is the management host's list of nodes (MAC → name,
// address, plan) with the network they boot on, and each node's boot
// state, kept on disk so that it survives a restart of herd.
//
// The inventory file is line-oriented; '#' starts a comment:
//
//	subnet 10.0.0.0/24
//	router 10.0.0.1
//	dns 10.0.0.1 10.0.0.2
//	domain cluster.example
//	lease 1h
//	range 10.0.0.100 10.0.0.199
//	node 52:54:00:00:00:01 node1 10.0.0.11 [plan=compute.ks] [profile=compute] [bmc=ipmi://admin@10.0.1.11] [rack=r01]
//
// rack=NAME (letters, digits, '.', '_', '-'; at most 63) says where the
// node stands: the status dashboard counts and filters nodes by rack.
//
// Global lines may come in any order before or between node lines; node
// lines keep their order, which is the ring order.
package inventory

import (
	"net"
	"net/netip"
	"time"

	"github.com/herdproject/herd/contract"
)

// Node is one reserved machine.
type Node struct {
	MAC  net.HardwareAddr
	Name string
	IP   netip.Addr
	// Plan names the node's install plan (a file under the plan
	// directory); "" = the default.
	Plan string
	// Profile is a free-form label (e.g. "compute") for plans and scripts.
	Profile string
	// BMC is the node's baseboard management controller, a bmc.Parse URL
	// (ipmi://USER@HOST[:PORT]); "" = none: its power is the human's.
	BMC string
	// Rack is where the node stands (rack=NAME); "" = not said.
	Rack string
	// Line is where the node was defined, for messages.
	Line int
}

// Inventory is a parsed inventory file.
type Inventory struct {
	// File is the path it was read from.
	File   string
	Subnet netip.Prefix
	Router netip.Addr   // invalid when none
	DNS    []netip.Addr // may be empty
	Domain string
	Lease  time.Duration // 0 = the server's default
	// RangeStart..RangeEnd is the dynamic pool; both invalid when there is
	// no dynamic range (reservations only).
	RangeStart, RangeEnd netip.Addr
	Nodes                []Node
}

// ByMAC returns the node with this MAC, if any.
func (inv *Inventory) ByMAC(mac net.HardwareAddr) (Node, bool) {
	for _, n := range inv.Nodes {
		if string(n.MAC) == string(mac) {
			return n, true
		}
	}
	return Node{}, false
}

// ByName returns the node with this name, if any.
func (inv *Inventory) ByName(name string) (Node, bool) {
	for _, n := range inv.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// ByIP returns the node with this address (as netip.Addr.String writes
// it), if any.
func (inv *Inventory) ByIP(ip string) (Node, bool) {
	for _, n := range inv.Nodes {
		if n.IP.String() == ip {
			return n, true
		}
	}
	return Node{}, false
}

// Status is what herd knows of a node now.
type Status struct {
	Name  string         `json:"name"`
	MAC   string         `json:"mac"`
	IP    string         `json:"ip"`
	State contract.State `json:"state"`
	// Reason says why the node failed.
	Reason string `json:"reason,omitempty"`
	// Bytes and Rate (bytes/s) of the current or last transfer.
	Bytes int64   `json:"bytes"`
	Rate  float64 `json:"rate"`
	// LocalBoot is true when the node's next boot is from its disk.
	LocalBoot bool `json:"local_boot"`
	// LastReport is when the node (or its boot firmware) was last heard.
	LastReport time.Time `json:"last_report,omitzero"`
	// Message is the node's last report for humans.
	Message string `json:"message,omitempty"`
	// Firmware is how the node's agent last booted ("uefi", "bios"; ""
	// = not said).
	Firmware string `json:"firmware,omitempty"`
	// Seen is when the boot services last saw the node's firmware or
	// boot loader, and SeenBy how ("dhcp bios", "dhcp ipxe", "tftp
	// undionly.kpxe"): a reset node shows up here before it fetches its
	// boot entry. It changes no state.
	Seen   time.Time `json:"seen,omitzero"`
	SeenBy string    `json:"seen_by,omitempty"`
	// Step is what the node does now, finer than State, and StepSince
	// when it began (nodestate.SetStep); "" = not known yet.
	Step      contract.Step `json:"step,omitempty"`
	StepSince time.Time     `json:"step_since,omitzero"`
	// Total is how many bytes the current or last transfer writes in
	// all; 0 = unknown.
	Total int64 `json:"total,omitempty"`
	// Rack is the inventory's rack= of the node.
	Rack string `json:"rack,omitempty"`
}

// CurrentState is s.State, StateUnknown when it was never set.
func (s Status) CurrentState() contract.State {
	if s.State == "" {
		return contract.StateUnknown
	}
	return s.State
}

// CountStates counts the nodes of list in each state.
func CountStates(list []Status) map[contract.State]int {
	c := map[contract.State]int{}
	for _, s := range list {
		c[s.CurrentState()]++
	}
	return c
}

// Store keeps every node's Status. The file-backed implementation
// (package nodestate) is safe for several processes at once: `herd nodes
// reinstall` may change a node while `herd serve` runs.
type Store interface {
	// Get returns a node's status; an inventory node never heard of is
	// StateUnknown with LocalBoot false.
	Get(name string) (Status, error)
	// List returns every inventory node's status in inventory order.
	List() ([]Status, error)
	// Update changes a node's status atomically (read, fn, write).
	Update(name string, fn func(*Status) error) error
}
