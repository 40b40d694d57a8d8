package httpboot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/nodestate"
)

// maxBody caps an API request body.
const maxBody = 1 << 20

// errNoChange ends a Store.Update that has nothing to write.
var errNoChange = errors.New("no change")

// decodeJSON reads one JSON object into v; its errors name the field or
// the byte at fault. Unknown fields are ignored (a newer agent may send
// more). It answers 400 (413 for a body above maxBody) itself and
// returns false on error.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	err := decodeBody(http.MaxBytesReader(w, r.Body, maxBody), v)
	if err == nil {
		return true
	}
	code := http.StatusBadRequest
	if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
		code = http.StatusRequestEntityTooLarge
	}
	writeJSONError(w, code, "%v", err)
	return false
}

func decodeBody(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return fmt.Errorf("body larger than %d bytes: %w", maxBody, err)
		case errors.As(err, &te) && te.Field != "":
			return fmt.Errorf("field %q: want a JSON %s, got %s", te.Field, te.Type, te.Value)
		case errors.As(err, &te):
			return fmt.Errorf("want a JSON object, got %s", te.Value)
		case errors.As(err, &se):
			return fmt.Errorf("malformed JSON at byte %d: %v", se.Offset, err)
		case errors.Is(err, io.EOF):
			return errors.New("empty body: want a JSON object")
		case errors.Is(err, io.ErrUnexpectedEOF):
			return errors.New("truncated JSON object")
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("more than one JSON value in the body")
	}
	return nil
}

// nodeByMAC finds the node of a request's "mac" field, answering 400 or
// 404 itself when there is none.
func (h *Handler) nodeByMAC(w http.ResponseWriter, s string) (inventory.Node, bool) {
	if s == "" {
		writeJSONError(w, http.StatusBadRequest, `field "mac": required`)
		return inventory.Node{}, false
	}
	mac, err := ParseMAC(s)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, `field "mac": %v`, err)
		return inventory.Node{}, false
	}
	node, ok := h.cfg.Inventory.ByMAC(mac)
	if !ok {
		writeJSONError(w, http.StatusNotFound, "MAC %s is not in the inventory: add a node line for it", mac)
		return inventory.Node{}, false
	}
	return node, true
}

// advance moves st to state to. A node whose earlier steps herd missed
// (the firmware was not booted by herd, a report was lost, herd restarted
// with an empty state directory) is walked through them: the agent's word
// is what it is doing now.
func advance(st *inventory.Status, to contract.State, reason string, now time.Time) error {
	err := nodestate.Transition(st, to, reason, now)
	if err == nil || !errors.Is(err, nodestate.ErrTransition) {
		return err
	}
	tmp := *st
	for _, s := range []contract.State{contract.StateBooting, contract.StateRegistered, contract.StateInstalling, contract.StateDone} {
		r := ""
		if s == to {
			r = reason
		}
		if err := nodestate.Transition(&tmp, s, r, now); err != nil {
			return err
		}
		if s == to {
			*st = tmp
			return nil
		}
	}
	return err
}

func (h *Handler) serveRegister(w http.ResponseWriter, r *http.Request) {
	var req contract.RegisterRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	node, ok := h.nodeByMAC(w, req.MAC)
	if !ok {
		return
	}
	if req.Name != "" && req.Name != node.Name {
		writeJSONError(w, http.StatusConflict, "MAC %s is node %s in the inventory, not %s", node.MAC, node.Name, req.Name)
		return
	}
	var agentIP netip.Addr
	if req.IP != "" {
		a, err := netip.ParseAddr(req.IP)
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, `field "ip": %v`, err)
			return
		}
		agentIP = a
	}
	ip := node.IP
	switch {
	case !ip.IsValid():
		ip = agentIP
	case agentIP.IsValid() && agentIP != ip:
		h.log.Warn(fmt.Sprintf("httpboot: node %s registered from %s, but the inventory reserves %s", node.Name, agentIP, ip))
	}
	switch req.Firmware {
	case "", contract.FirmwareUEFI, contract.FirmwareBIOS:
	default:
		writeJSONError(w, http.StatusBadRequest, `field "firmware": %q: want %q, %q or nothing`, req.Firmware, contract.FirmwareUEFI, contract.FirmwareBIOS)
		return
	}
	msg := "agent registered"
	if req.AgentVersion != "" {
		msg += " (version " + req.AgentVersion + ")"
	}
	if req.Firmware != "" {
		msg += " (" + req.Firmware + ")"
	}
	err := h.cfg.Store.Update(node.Name, func(s *inventory.Status) error {
		if err := advance(s, contract.StateRegistered, msg, h.cfg.Now()); err != nil {
			return err
		}
		if ip.IsValid() && s.IP == "" {
			s.IP = ip.String()
		}
		s.Firmware = req.Firmware
		return nil
	})
	if err != nil {
		h.storeError(w, node, err)
		return
	}
	h.log.Debug(fmt.Sprintf("httpboot: node %s (%s) registered", node.Name, node.MAC))
	resp := contract.RegisterResponse{Name: node.Name, Plan: node.Plan, Profile: node.Profile, Ring: h.cfg.Ring}
	if p, ok := h.cfg.Plans[node.Plan]; ok {
		resp.Plan, resp.PlanText = p.Name, p.Text
	}
	if ip.IsValid() {
		resp.IP = ip.String()
	}
	writeJSON(w, http.StatusOK, resp)
}

// servePlan answers GET /api/plan/{mac}. It changes no state; a node
// not registered yet is at step agent up (its agent asks before it
// registers).
func (h *Handler) servePlan(w http.ResponseWriter, r *http.Request) {
	node, ok := h.nodeByMAC(w, r.PathValue("mac"))
	if !ok {
		return
	}
	err := h.cfg.Store.Update(node.Name, func(s *inventory.Status) error {
		switch s.CurrentState() {
		case contract.StateUnknown, contract.StateBooting:
			nodestate.SetStep(s, contract.StepAgentUp, h.cfg.Now())
			return nil
		}
		return errNoChange
	})
	if err != nil && !errors.Is(err, errNoChange) {
		// Serving the plan matters more than recording the step.
		h.log.Warn(fmt.Sprintf("httpboot: node %s: recording the step: %v", node.Name, err))
	}
	resp := contract.PlanResponse{Name: node.Name}
	if p, ok := h.cfg.Plans[node.Plan]; ok {
		resp.Plan, resp.PlanText = p.Name, p.Text
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) serveReport(w http.ResponseWriter, r *http.Request) {
	var req contract.ReportRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	switch req.State {
	case contract.StateInstalling, contract.StateDone, contract.StateFailed:
	case "":
		writeJSONError(w, http.StatusBadRequest, `field "state": required (installing, done or failed)`)
		return
	default:
		writeJSONError(w, http.StatusBadRequest, `field "state": want installing, done or failed, got %q`, req.State)
		return
	}
	if req.Bytes < 0 {
		writeJSONError(w, http.StatusBadRequest, `field "bytes": negative`)
		return
	}
	if req.Rate < 0 {
		writeJSONError(w, http.StatusBadRequest, `field "rate": negative`)
		return
	}
	if req.Total < 0 {
		writeJSONError(w, http.StatusBadRequest, `field "total": negative`)
		return
	}
	if req.Step != "" && !slices.Contains(contract.Steps, req.Step) {
		writeJSONError(w, http.StatusBadRequest, `field "step": unknown step %q`, req.Step)
		return
	}
	node, ok := h.nodeByMAC(w, req.MAC)
	if !ok {
		return
	}
	reason := req.Message
	if req.State == contract.StateFailed {
		reason = req.Reason
		if reason == "" {
			reason = req.Message
		}
		if reason == "" {
			reason = "the agent gave no reason"
		}
	}
	var st inventory.Status
	err := h.cfg.Store.Update(node.Name, func(s *inventory.Status) error {
		was := s.State
		if err := advance(s, req.State, reason, h.cfg.Now()); err != nil {
			return err
		}
		s.Bytes, s.Rate = req.Bytes, req.Rate
		if req.Total > 0 {
			s.Total = req.Total
		}
		step := req.Step
		if step == "" && req.State == contract.StateDone {
			step = contract.StepRebooting
		}
		nodestate.SetStep(s, step, h.cfg.Now())
		if s.State == contract.StateDone && s.Total < s.Bytes {
			// Done is all of it.
			s.Total = s.Bytes
		}
		if req.Message != "" {
			s.Message = req.Message
		}
		st = *s
		if was != s.State {
			h.log.Debug(fmt.Sprintf("httpboot: node %s: %s → %s%s", node.Name, was, s.State, reasonSuffix(s)))
		}
		return nil
	})
	if err != nil {
		h.storeError(w, node, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func reasonSuffix(s *inventory.Status) string {
	if s.State == contract.StateFailed {
		return ": " + s.Reason
	}
	return ""
}

func (h *Handler) storeError(w http.ResponseWriter, node inventory.Node, err error) {
	h.log.Warn(fmt.Sprintf("httpboot: node %s: %v", node.Name, err))
	if errors.Is(err, nodestate.ErrTransition) {
		writeJSONError(w, http.StatusConflict, "%v", err)
		return
	}
	writeJSONError(w, http.StatusInternalServerError, "node %s: %v", node.Name, err)
}

func (h *Handler) serveNodes(w http.ResponseWriter, r *http.Request) {
	list, err := h.cfg.Store.List()
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if list == nil {
		list = []inventory.Status{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (h *Handler) serveNode(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := h.cfg.Inventory.ByName(name); !ok {
		writeJSONError(w, http.StatusNotFound, "no node %q in the inventory", name)
		return
	}
	st, err := h.cfg.Store.Get(name)
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
