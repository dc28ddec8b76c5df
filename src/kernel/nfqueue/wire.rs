//! NFQUEUE messages on the wire (nfnetlink_queue, `linux/netfilter/
//! nfnetlink_queue.h`): building config and verdict requests, reading
//! packet messages and the kernel's error answers. Pure: bytes in, values
//! out; a malformed message is an error value, never a panic.
//!
//! Layout: `nlmsghdr` (16 bytes, host order) + `nfgenmsg` (family, version,
//! big-endian resource id = queue number) + attributes (`nlattr`: u16
//! length including its 4-byte header, u16 type; padded to 4 bytes).

use std::fmt;

/// nfnetlink subsystem of the queue (NFNL_SUBSYS_QUEUE).
const SUBSYS_QUEUE: u16 = 3;
/// Message types of the subsystem.
const MSG_PACKET: u16 = 0;
const MSG_VERDICT: u16 = 1;
const MSG_CONFIG: u16 = 2;

/// netlink control messages.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Types below this are netlink's own control messages.
const NLMSG_MIN_TYPE: u16 = 0x10;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;

const NLMSG_HDRLEN: usize = 16;
const NFGEN_HDRLEN: usize = 4;

/// Config attributes and commands.
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const CMD_BIND: u8 = 1;
const COPY_PACKET: u8 = 2;

/// Packet and verdict attributes.
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_MARK: u16 = 3;
const NFQA_PAYLOAD: u16 = 10;

/// Attribute type bits that are flags, not part of the type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// What the kernel does with a queued packet (`NF_DROP`, `NF_ACCEPT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Drop it; the sender retransmits.
    Drop = 0,
    /// Let it continue through the hooks.
    Accept = 1,
}

/// One queued packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The kernel's id, to be named in the verdict.
    pub id: u32,
    /// The packet's mark (skb->mark), when the kernel sent it.
    pub mark: Option<u32>,
    /// The IP packet (IPv4 or IPv6 header first).
    pub payload: Vec<u8>,
}

/// One message from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A queued packet.
    Packet(Packet),
    /// The answer to a request sent with an ACK flag: `0` success, else the
    /// (positive) errno; also the kernel's unasked error answer to a
    /// verdict (e.g. ENOENT for a packet it no longer holds).
    Ack(i32),
    /// Anything else (other subsystems, control messages): ignored.
    Other,
}

/// A message that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed nfqueue message: {}", self.0)
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Builds requests into a reused buffer.
#[derive(Debug, Default)]
pub struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn start(&mut self, msg: u16, flags: u16, queue: u16) {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 4]); // length, set by `bytes`
        self.buf
            .extend_from_slice(&((SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
        self.buf
            .extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        self.buf.extend_from_slice(&[0; 8]); // sequence, port id
                                             // nfgenmsg: AF_UNSPEC, NFNETLINK_V0, the queue number.
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&queue.to_be_bytes());
    }

    fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    fn bytes(&mut self) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        &self.buf
    }

    /// Binds this socket to `queue` (answered with an ACK; EPERM while
    /// another socket holds the queue).
    pub fn bind(&mut self, queue: u16) -> &[u8] {
        self.start(MSG_CONFIG, NLM_F_ACK, queue);
        // nfqnl_msg_config_cmd: command, pad, pf (unused since Linux 3.8).
        self.attr(NFQA_CFG_CMD, &[CMD_BIND, 0, 0, 0]);
        self.bytes()
    }

    /// Asks for whole packets (up to `range` bytes) and at most `max_len`
    /// of them waiting in the kernel.
    pub fn params(&mut self, queue: u16, range: u32, max_len: u32) -> &[u8] {
        self.start(MSG_CONFIG, NLM_F_ACK, queue);
        // nfqnl_msg_config_params: copy_range (be32), copy_mode (u8).
        let mut params = range.to_be_bytes().to_vec();
        params.push(COPY_PACKET);
        self.attr(NFQA_CFG_PARAMS, &params);
        self.attr(NFQA_CFG_QUEUE_MAXLEN, &max_len.to_be_bytes());
        self.bytes()
    }

    /// The verdict for packet `id`, with a new payload and mark if given.
    /// Sent without an ACK flag: only an error is answered.
    pub fn verdict(
        &mut self,
        queue: u16,
        id: u32,
        verdict: Verdict,
        payload: Option<&[u8]>,
        mark: Option<u32>,
    ) -> &[u8] {
        self.start(MSG_VERDICT, 0, queue);
        // nfqnl_msg_verdict_hdr: verdict (be32), id (be32).
        let mut hdr = [0u8; 8];
        hdr[..4].copy_from_slice(&(verdict as u32).to_be_bytes());
        hdr[4..].copy_from_slice(&id.to_be_bytes());
        self.attr(NFQA_VERDICT_HDR, &hdr);
        if let Some(mark) = mark {
            self.attr(NFQA_MARK, &mark.to_be_bytes());
        }
        if let Some(payload) = payload {
            self.attr(NFQA_PAYLOAD, payload);
        }
        self.bytes()
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Splits one received datagram into its messages, calling `each` for
/// every one in order. Stops at the first malformed message (the rest of
/// the datagram cannot be framed).
pub fn parse(datagram: &[u8], mut each: impl FnMut(Incoming)) -> Result<(), Malformed> {
    let mut rest = datagram;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32_at(rest, 0) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(Malformed("message length"));
        }
        each(parse_message(&rest[..len])?);
        rest = &rest[align4(len).min(rest.len())..];
    }
    Ok(())
}

fn parse_message(msg: &[u8]) -> Result<Incoming, Malformed> {
    let kind = u16_at(msg, 4);
    let body = &msg[NLMSG_HDRLEN..];
    match kind {
        NLMSG_ERROR => {
            // nlmsgerr: error (negative errno, or 0 for an ACK), then the
            // request's header (all of it unless NLM_F_CAPPED).
            let err = body.get(..4).ok_or(Malformed("short error message"))?;
            let errno = i32::from_ne_bytes([err[0], err[1], err[2], err[3]]);
            Ok(Incoming::Ack(errno.saturating_abs()))
        }
        NLMSG_DONE => Ok(Incoming::Ack(0)),
        k if k < NLMSG_MIN_TYPE => Ok(Incoming::Other),
        k if k == (SUBSYS_QUEUE << 8) | MSG_PACKET => parse_packet(body).map(Incoming::Packet),
        _ => Ok(Incoming::Other),
    }
}

fn parse_packet(body: &[u8]) -> Result<Packet, Malformed> {
    let mut attrs = body
        .get(NFGEN_HDRLEN..)
        .ok_or(Malformed("short packet message"))?;
    let (mut id, mut mark, mut payload) = (None, None, None);
    while attrs.len() >= 4 {
        let len = u16_at(attrs, 0) as usize;
        let kind = u16_at(attrs, 2) & NLA_TYPE_MASK;
        if len < 4 || len > attrs.len() {
            return Err(Malformed("attribute length"));
        }
        let value = &attrs[4..len];
        match kind {
            // nfqnl_msg_packet_hdr: packet_id (be32), hw_protocol, hook.
            NFQA_PACKET_HDR => id = Some(be32(value).ok_or(Malformed("packet header"))?),
            NFQA_MARK => mark = Some(be32(value).ok_or(Malformed("mark"))?),
            NFQA_PAYLOAD => payload = Some(value.to_vec()),
            _ => {}
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    Ok(Packet {
        id: id.ok_or(Malformed("no packet header"))?,
        mark,
        payload: payload.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet message as the kernel sends it.
    fn packet_message(id: u32, mark: Option<u32>, payload: &[u8]) -> Vec<u8> {
        let mut r = Request::default();
        r.start(MSG_PACKET, 0, 21);
        let mut hdr = id.to_be_bytes().to_vec();
        hdr.extend_from_slice(&[0x08, 0x00, 1]); // IPv4, hook 1
        r.attr(NFQA_PACKET_HDR, &hdr);
        if let Some(m) = mark {
            r.attr(NFQA_MARK, &m.to_be_bytes());
        }
        r.attr(NFQA_PAYLOAD, payload);
        r.bytes().to_vec()
    }

    /// Set by the kernel on an error answer whose request is not echoed
    /// (NETLINK_CAP_ACK).
    const NLM_F_CAPPED: u16 = 0x100;

    fn error_message(errno: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&NLM_F_CAPPED.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&(-errno).to_ne_bytes());
        m.extend_from_slice(&[0; 16]);
        m
    }

    fn all(datagram: &[u8]) -> Result<Vec<Incoming>, Malformed> {
        let mut out = Vec::new();
        parse(datagram, |m| out.push(m))?;
        Ok(out)
    }

    #[test]
    fn packets_and_errors_in_one_datagram_all_come_out() {
        let mut d = packet_message(7, Some(0x100), b"\x45abc");
        d.extend(error_message(libc::ENOENT));
        d.extend(packet_message(8, None, b"\x45de"));
        assert_eq!(
            all(&d).unwrap(),
            vec![
                Incoming::Packet(Packet {
                    id: 7,
                    mark: Some(0x100),
                    payload: b"\x45abc".to_vec()
                }),
                Incoming::Ack(libc::ENOENT),
                Incoming::Packet(Packet {
                    id: 8,
                    mark: None,
                    payload: b"\x45de".to_vec()
                }),
            ]
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let good = packet_message(1, None, b"xyz");
        // Every truncation and every single-byte corruption of the length
        // fields parses or fails, never panics.
        for n in 0..good.len() {
            let _ = all(&good[..n]);
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 3, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                let _ = all(&bad);
            }
        }
        let mut no_hdr = good.clone();
        no_hdr[22] = 0x7f; // the first attribute's type
        assert!(all(&no_hdr).is_err());
        assert_eq!(all(&good[..10]).unwrap(), vec![]);
    }

    #[test]
    fn verdict_layout() {
        let mut r = Request::default();
        let v = r
            .verdict(21, 0x01020304, Verdict::Accept, Some(b"ab"), Some(5))
            .to_vec();
        assert_eq!(u32_at(&v, 0) as usize, v.len());
        assert_eq!(u16_at(&v, 4), (3 << 8) | 1);
        assert_eq!(&v[16..20], &[0, 0, 0, 21]);
        // verdict header: accept, id
        assert_eq!((u16_at(&v, 20), u16_at(&v, 22)), (12, NFQA_VERDICT_HDR));
        assert_eq!(&v[24..32], &[0, 0, 0, 1, 1, 2, 3, 4]);
        // mark, then payload padded to 4 bytes
        assert_eq!((u16_at(&v, 32), u16_at(&v, 34)), (8, NFQA_MARK));
        assert_eq!(&v[36..40], &[0, 0, 0, 5]);
        assert_eq!((u16_at(&v, 40), u16_at(&v, 42)), (6, NFQA_PAYLOAD));
        assert_eq!(&v[44..48], &[b'a', b'b', 0, 0]);
    }
}
