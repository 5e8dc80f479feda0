package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/linxGnu/gosmpp"
	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
)

// event is what gosmpp's callbacks hand to the script: they run on gosmpp's goroutines,
// the script's state lives on the main one.
type event struct {
	sess    string
	p       pdu.PDU // a PDU from OnPDU (already answered by gosmpp when it needs a response)
	closed  bool
	state   gosmpp.State
	rebound bool
	err     error // OnSubmitError
}

type runner struct {
	mode, shortCode string
	events          chan event

	sessions map[string]*gosmpp.Session
	order    []string // bind order: trx, or rx then tx

	pending   map[int32]bool            // sequence numbers of submit_sm awaiting a response
	ids       map[string]bool           // message ids the SMSC gave
	receipted map[string]bool           // ids whose receipt came
	early     map[string]*pdu.DeliverSM // receipts ahead of their submit_sm_resp
	moText    string                    // the MO asked for, once asked
	moOK      bool

	expectClose     bool // during the server-side unbind and our own
	closed, rebound map[string]bool
	unbindResp      map[string]bool
}

// Output: one mutex so that no line follows a FAIL or PASS.
var (
	outMu sync.Mutex
	step  string
)

func (r *runner) setStep(s string) {
	outMu.Lock()
	step = s
	outMu.Unlock()
}

func (r *runner) say(format string, args ...any) {
	outMu.Lock()
	fmt.Printf(format+"\n", args...)
	outMu.Unlock()
}

func (r *runner) fail(format string, args ...any) {
	outMu.Lock() // never released: the process ends here
	reason := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	fmt.Printf("FAIL %s: %s\n", step, reason)
	os.Exit(1)
}

func (r *runner) pass() {
	outMu.Lock()
	fmt.Println("PASS")
	os.Exit(0)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gosmpp-peer: "+format+"\n", args...)
}

// bind opens one session; gosmpp rebinds it by itself, every 250 ms, after it ends.
func (r *runner) bind(name string, c gosmpp.Connector) {
	s, err := gosmpp.NewSession(c, gosmpp.Settings{
		EnquireLink:  5 * time.Second,
		ReadTimeout:  15 * time.Second,
		WriteTimeout: 5 * time.Second,
		OnPDU:        func(p pdu.PDU, _ bool) { r.events <- event{sess: name, p: p} },
		OnSubmitError: func(p pdu.PDU, err error) {
			r.events <- event{sess: name, err: fmt.Errorf("sending %T: %w", p, err)}
		},
		OnReceivingError: func(err error) { logf("%s: receiving: %v", name, err) },
		OnRebindingError: func(err error) { logf("%s: rebinding: %v", name, err) },
		OnClosed:         func(st gosmpp.State) { r.events <- event{sess: name, closed: true, state: st} },
		OnRebind:         func() { r.events <- event{sess: name, rebound: true} },
	}, 250*time.Millisecond)
	if err != nil {
		r.fail("%s: %v", name, err)
	}
	r.sessions[name] = s
	r.order = append(r.order, name)
}

func (r *runner) submit(s *pdu.SubmitSM) {
	name := "trx"
	if r.mode == "txrx" {
		name = "tx"
	}
	r.pending[s.GetSequenceNumber()] = true
	if err := r.sessions[name].Transmitter().Submit(s); err != nil {
		r.fail("submit_sm to %s: %v", s.DestAddr.Address(), err)
	}
}

// wait handles events until cond holds (the watchdog bounds it).
func (r *runner) wait(cond func() bool) {
	for !cond() {
		r.handle(<-r.events)
	}
	// Once every response is in, a stashed receipt can only be for an unknown id.
	if len(r.pending) == 0 {
		for id := range r.early {
			r.fail("receipt for unknown message id %q", id)
		}
	}
}

// waitFor is wait with its own, shorter bound.
func (r *runner) waitFor(cond func() bool, d time.Duration, why string) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for !cond() {
		select {
		case ev := <-r.events:
			r.handle(ev)
		case <-deadline.C:
			r.fail("%s within %v", why, d)
		}
	}
}

func (r *runner) handle(ev event) {
	switch {
	case ev.closed:
		if !r.expectClose {
			r.fail("%s session closed unexpectedly (%s)", ev.sess, ev.state.String())
		}
		logf("%s: closed (%s)", ev.sess, ev.state.String())
		r.closed[ev.sess] = true
	case ev.rebound:
		if !r.closed[ev.sess] {
			r.fail("%s rebound without having been closed", ev.sess)
		}
		logf("%s: rebound", ev.sess)
		r.rebound[ev.sess] = true
	case ev.err != nil:
		if !r.expectClose {
			r.fail("%s: %v", ev.sess, ev.err)
		}
		logf("%s: %v", ev.sess, ev.err)
	default:
		r.onPDU(ev.sess, ev.p)
	}
}

func (r *runner) onPDU(sess string, p pdu.PDU) {
	switch p := p.(type) {
	case *pdu.SubmitSMResp:
		seq := p.GetSequenceNumber()
		if !r.pending[seq] {
			r.fail("submit_sm_resp with unknown sequence number %d", seq)
		}
		delete(r.pending, seq)
		if p.CommandStatus != data.ESME_ROK {
			r.fail("submit_sm_resp status %s (%s)", p.CommandStatus, p.CommandStatus.Desc())
		}
		if r.ids[p.MessageID] {
			r.fail("message id %q given twice", p.MessageID)
		}
		r.ids[p.MessageID] = true
		r.say("SUBMITTED %s", p.MessageID)
		if d, ok := r.early[p.MessageID]; ok {
			delete(r.early, p.MessageID)
			r.receipt(d)
		}
	case *pdu.DeliverSM:
		if sess == "tx" {
			r.fail("deliver_sm on a transmitter session")
		}
		if p.EsmClass&0x3C == data.SM_SMSC_DLV_RCPT_TYPE {
			r.receipt(p)
		} else {
			r.mo(p)
		}
	case *pdu.UnbindResp:
		r.unbindResp[sess] = true
	case *pdu.GenericNack:
		r.fail("generic_nack from the SMSC on %s: status %s, sequence number %d",
			sess, p.CommandStatus, p.GetSequenceNumber())
	case *pdu.EnquireLinkResp:
	default:
		logf("%s: ignoring %T", sess, p)
	}
}

// receipt checks a delivery receipt. gosmpp has no receipt parser (nothing reads the
// "id:... stat:..." text), so the id and state come from the receipted_message_id and
// message_state TLVs, read through its TLV API.
func (r *runner) receipt(d *pdu.DeliverSM) {
	text, _ := d.Message.GetMessage()
	idTLV, ok := d.OptionalParameters[pdu.TagReceiptedMessageID]
	if !ok {
		r.fail("receipt without receipted_message_id TLV: %q", text)
	}
	stateTLV, ok := d.OptionalParameters[pdu.TagMessageStateOption]
	if !ok || len(stateTLV.Data) != 1 {
		r.fail("receipt without a one-octet message_state TLV: %q", text)
	}
	id, state := idTLV.String(), stateTLV.Data[0]
	logf("receipt %s state %d: %q", id, state, text)
	if !r.ids[id] {
		if len(r.pending) == 0 || r.early[id] != nil {
			r.fail("receipt for unknown message id %q: %q", id, text)
		}
		r.early[id] = d // its submit_sm_resp may still be on its way
		return
	}
	if r.receipted[id] {
		r.fail("second receipt for message id %q: %q", id, text)
	}
	if state != data.SM_STATE_DELIVERED {
		r.fail("receipt for %q has message_state %d: %q", id, state, text)
	}
	r.receipted[id] = true
	r.say("RECEIPT %s %s", id, stat(state))
}

// stat names a message_state value the way receipts' stat: field does (SMPP 3.4 B.1).
func stat(state byte) string {
	names := []string{"", "ENROUTE", "DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD"}
	if int(state) < len(names) && state > 0 {
		return names[state]
	}
	return fmt.Sprintf("STATE%d", state)
}

func (r *runner) mo(d *pdu.DeliverSM) {
	text, err := d.Message.GetMessage()
	enc := d.Message.Encoding()
	dest := d.DestAddr.Address()
	if r.moText == "" || dest != r.shortCode || err != nil || enc == nil ||
		enc.DataCoding() != data.GSM7BITCoding || text != r.moText {
		logf("ignoring deliver_sm to %q (data_coding of %T): %q", dest, enc, text)
		return
	}
	r.moOK = true
}
