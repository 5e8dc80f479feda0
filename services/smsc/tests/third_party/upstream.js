// A third-party SMSC for the upstream connector test (services/smsc/tests/upstream.rs),
// built on the `smpp` npm package's server (smpp@0.5.1), behaving as many real
// upstreams do: submit_sm_resp with an uppercase hexadecimal message_id, and receipts
// with only the standard text, whose `id:` is that id in decimal (no
// receipted_message_id or message_state TLV).
//
//   node upstream.js [port]   prints `LISTENING <port>` once it accepts connections
//
// Destinations starting 4477009004 fail (stat:UNDELIV err:001); others are delivered.
// A submit whose text is PING also gets an MO back, from its destination to short
// code 5555.
'use strict';

const smpp = require('smpp');

const port = Number(process.argv[2] || 0);
let next = 1000000000;

function stamp(d) {
  const p = (n) => String(n).padStart(2, '0');
  return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) +
    p(d.getUTCHours()) + p(d.getUTCMinutes());
}

function text(sm) {
  if (!sm) return '';
  if (Buffer.isBuffer(sm)) return sm.toString('latin1');
  if (Buffer.isBuffer(sm.message)) return sm.message.toString('latin1');
  return String(sm.message || '');
}

const server = smpp.createServer((session) => {
  session.on('error', () => {});
  session.on('bind_transceiver', (pdu) => {
    if (pdu.system_id !== 'nodea' || pdu.password !== 'secret') {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    session.send(pdu.response({ system_id: 'thirdparty' }));
  });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.close();
  });
  session.on('submit_sm', (pdu) => {
    next += 1;
    const id = next;
    const dest = pdu.destination_addr;
    const failed = dest.startsWith('4477009004');
    session.send(pdu.response({ message_id: id.toString(16).toUpperCase() }));
    const now = stamp(new Date());
    const receipt = `id:${id} sub:001 dlvrd:${failed ? '000' : '001'} submit date:${now} ` +
      `done date:${now} stat:${failed ? 'UNDELIV' : 'DELIVRD'} err:${failed ? '001' : '000'} ` +
      `text:${text(pdu.short_message).slice(0, 20)}`;
    setTimeout(() => {
      session.deliver_sm({
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: dest,
        dest_addr_ton: pdu.source_addr_ton,
        dest_addr_npi: pdu.source_addr_npi,
        destination_addr: pdu.source_addr,
        esm_class: 4,
        short_message: Buffer.from(receipt, 'latin1'),
      });
      if (text(pdu.short_message) === 'PING') {
        session.deliver_sm({
          source_addr_ton: 1,
          source_addr_npi: 1,
          source_addr: dest,
          dest_addr_ton: 3,
          destination_addr: '5555',
          short_message: Buffer.from('PONG', 'latin1'),
        });
      }
    }, 50);
  });
});

server.listen(port, '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
