// The gosmpp interop peer: an ESME built on github.com/linxGnu/gosmpp, used the way its
// authors intend (Session + connectors, OnPDU with automatic responses, its auto-rebind),
// running the script of the interop harness and reporting each step on stdout.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/linxGnu/gosmpp"
	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
)

const stack = "gosmpp"

func main() {
	if len(os.Args) < 2 || os.Args[1] != "esme" {
		fmt.Fprintln(os.Stderr, "usage: gosmpp-peer esme --host H --port P [--rx-port P2] --system-id ID "+
			"--password PW --mode trx|txrx --short-code CODE [--timeout-secs 90] [--expect-bind-status N]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("esme", flag.ExitOnError)
	host := fs.String("host", "127.0.0.1", "SMSC host")
	port := fs.Int("port", 0, "SMSC SMPP port (transceiver, transmitter)")
	rxPort := fs.Int("rx-port", 0, "receiver's port in txrx mode (default --port)")
	systemID := fs.String("system-id", "", "system_id")
	password := fs.String("password", "", "password")
	mode := fs.String("mode", "trx", "trx or txrx")
	shortCode := fs.String("short-code", "", "the account's short code (MO destination)")
	timeout := fs.Int("timeout-secs", 90, "overall timeout")
	refused := fs.Int("expect-bind-status", 0, "only bind once and expect this command_status")
	_ = fs.Parse(os.Args[2:])
	if *rxPort == 0 {
		*rxPort = *port
	}
	if *mode != "trx" && *mode != "txrx" {
		fmt.Fprintln(os.Stderr, "--mode must be trx or txrx")
		os.Exit(2)
	}

	r := &runner{
		mode:       *mode,
		shortCode:  *shortCode,
		events:     make(chan event, 1024),
		sessions:   map[string]*gosmpp.Session{},
		pending:    map[int32]bool{},
		ids:        map[string]bool{},
		receipted:  map[string]bool{},
		early:      map[string]*pdu.DeliverSM{},
		closed:     map[string]bool{},
		rebound:    map[string]bool{},
		unbindResp: map[string]bool{},
	}
	// One watchdog bounds every wait, including gosmpp's own blocking ones (its bind
	// has no read timeout of its own).
	time.AfterFunc(time.Duration(*timeout)*time.Second, func() {
		r.fail("timed out after %ds", *timeout)
	})
	auth := func(p int) gosmpp.Auth {
		return gosmpp.Auth{
			SMSC:     net.JoinHostPort(*host, strconv.Itoa(p)),
			SystemID: *systemID,
			Password: *password,
		}
	}
	if *refused != 0 {
		r.refusedBind(auth(*port), *refused)
	}
	r.run(auth(*port), auth(*rxPort))
}

// refusedBind binds once (a transceiver, or a receiver in txrx mode) and passes when
// gosmpp reports the refusal with that command_status.
func (r *runner) refusedBind(auth gosmpp.Auth, want int) {
	r.setStep("refused bind")
	c := gosmpp.TRXConnector(gosmpp.NonTLSDialer, auth)
	if r.mode == "txrx" {
		c = gosmpp.RXConnector(gosmpp.NonTLSDialer, auth)
	}
	conn, err := c.Connect()
	if err == nil {
		_ = conn.Close()
		r.fail("bound, expected command_status %d", want)
	}
	var be gosmpp.BindError
	if !errors.As(err, &be) || int(be.CommandStatus) != want {
		r.fail("expected a bind error with command_status %d, got %v", want, err)
	}
	r.say("BIND-REFUSED %d", want)
	r.pass()
}

// run is the script, step by step.
func (r *runner) run(auth, rxAuth gosmpp.Auth) {
	r.setStep("bind")
	if r.mode == "trx" {
		r.bind("trx", gosmpp.TRXConnector(gosmpp.NonTLSDialer, auth))
	} else {
		r.bind("rx", gosmpp.RXConnector(gosmpp.NonTLSDialer, rxAuth))
		r.bind("tx", gosmpp.TXConnector(gosmpp.NonTLSDialer, auth))
	}
	r.say("BOUND %s", r.mode)

	r.setStep("submit")
	r.submit(r.gsm("447700900101", "Hello from "+stack+" @ 100%"))
	r.submit(r.ucs2("447700900102", "Привет, 世界 "+stack))
	for _, part := range r.long("447700900103", longText()) {
		r.submit(part)
	}
	r.wait(func() bool { return len(r.pending) == 0 })

	r.setStep("receipts")
	r.wait(func() bool { return len(r.receipted) == len(r.ids) })

	r.setStep("mo")
	r.moText = fmt.Sprintf("mo for %s %s", stack, r.mode)
	r.say("WANT-MO %s", r.moText)
	r.wait(func() bool { return r.moOK })
	r.say("MO-OK")

	// gosmpp answers the SMSC's unbind itself, reports the close through OnClosed and
	// then rebinds on its own (NewSession's rebindingInterval): that is the rebind used.
	// Each session rebinds independently, so in txrx the receiver may not come back first.
	r.setStep("server-side unbind")
	r.expectClose = true
	r.say("WANT-UNBIND")
	r.wait(func() bool { return len(r.rebound) == len(r.sessions) })
	r.expectClose = false
	r.say("REBOUND")

	r.setStep("submit after rebind")
	r.submit(r.gsm("447700900104", "Hello again from "+stack))
	r.wait(func() bool { return len(r.pending) == 0 })
	r.wait(func() bool { return len(r.receipted) == len(r.ids) })

	r.setStep("unbind")
	r.expectClose = true
	for _, name := range r.order {
		// Session.Close sends unbind and reads on for a moment: an unbind_resp arriving
		// then reaches OnPDU before Close returns, and Close closes the socket. The SMSC
		// leaves that close to it (an SMSC closing first makes Close fail).
		if err := r.sessions[name].Close(); err != nil {
			r.fail("%s: Close: %v", name, err)
		}
		r.waitFor(func() bool { return r.unbindResp[name] }, time.Second, "no unbind_resp on "+name)
	}
	r.pass()
}

// longText is the 300-character GSM text of the long message.
func longText() string {
	return strings.Repeat("Long message from "+stack+". ", 12)[:300]
}

func newSubmit(dest string) *pdu.SubmitSM {
	s := pdu.NewSubmitSM().(*pdu.SubmitSM)
	s.SourceAddr, _ = pdu.NewAddressWithTonNpiAddr(1, 1, "447700900001")
	s.DestAddr, _ = pdu.NewAddressWithTonNpiAddr(1, 1, dest)
	s.RegisteredDelivery = data.SM_SMSC_RECEIPT_REQUESTED
	return s
}

// gsm uses gosmpp's GSM 03.38 encoder, unpacked (one septet an octet, data_coding 0).
func (r *runner) gsm(dest, text string) *pdu.SubmitSM {
	s := newSubmit(dest)
	r.must(s.Message.SetMessageWithEncoding(text, data.GSM7BIT))
	return s
}

func (r *runner) ucs2(dest, text string) *pdu.SubmitSM {
	s := newSubmit(dest)
	r.must(s.Message.SetMessageWithEncoding(text, data.UCS2))
	return s
}

// long splits with gosmpp's SubmitSM.Split, which adds the concatenation UDH and sets
// esm_class 0x40.
func (r *runner) long(dest, text string) []*pdu.SubmitSM {
	s := newSubmit(dest)
	r.must(s.Message.SetLongMessageWithEnc(text, data.GSM7BIT))
	parts, err := s.Split()
	r.must(err)
	for _, p := range parts {
		// Split copies the original's header into every part, so all parts would carry
		// one sequence number; give each its own so the responses can be told apart.
		p.AssignSequenceNumber()
	}
	return parts
}

func (r *runner) must(err error) {
	if err != nil {
		r.fail("building a PDU: %v", err)
	}
}
