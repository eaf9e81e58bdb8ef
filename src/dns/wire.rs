//! DNS messages (RFC 1035): a query for one name and type, and what an answer says about it.
//! Pure over byte slices: no socket, easy to fuzz.
//!
//! An answer is read strictly: its ID, flags and question must be the query's, every name
//! and record must lie inside the message, and compression pointers may only point back
//! (so a loop cannot be built). Records are taken from the answer section when their owner is
//! the name asked or a name a CNAME in the same answer leads to from it; A and AAAA records of
//! the additional section are kept apart (the addresses of SRV targets).

use std::net::IpAddr;

/// Record types asked and read.
pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;

/// The most bytes a name takes as text (RFC 1035 §2.3.4, without the trailing dot).
const MAX_NAME: usize = 253;
/// The most records of one answer taken: a bound on the members one name can bring.
pub const MAX_RECORDS: usize = 512;
/// The most CNAMEs followed from the name asked.
const MAX_CHAIN: usize = 8;

/// Why an answer says nothing usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Not an answer to this query (another ID or question): ignored, the wait goes on.
    NotOurs,
    /// The message is cut short or malformed.
    Malformed(&'static str),
    /// The answer did not fit (TC): ask again over TCP.
    Truncated,
    /// The name does not exist (NXDOMAIN).
    NoSuchName,
    /// The server failed (SERVFAIL), refused, or answered another error code.
    Rcode(u8),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::NotOurs => f.write_str("an answer to another query"),
            WireError::Malformed(why) => write!(f, "malformed answer ({why})"),
            WireError::Truncated => f.write_str("answer truncated"),
            WireError::NoSuchName => f.write_str("no such name (NXDOMAIN)"),
            WireError::Rcode(2) => f.write_str("server failure (SERVFAIL)"),
            WireError::Rcode(5) => f.write_str("query refused (REFUSED)"),
            WireError::Rcode(n) => write!(f, "error code {n}"),
        }
    }
}

/// One SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host, lowercase, without the trailing dot.
    pub target: String,
}

/// What an answer says about the name asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// The addresses (an A or AAAA query).
    pub addrs: Vec<IpAddr>,
    /// The SRV records (an SRV query).
    pub srv: Vec<Srv>,
    /// Addresses of other names from the additional section: (name, address).
    pub extra: Vec<(String, IpAddr)>,
    /// The least TTL of the records used (CNAMEs on the way included), seconds; `None` when
    /// no record was used.
    pub ttl: Option<u32>,
}

/// A query for `name` (no trailing dot) of type `qtype`, recursion desired, with ID `id`.
/// `None` for a name that cannot be written (a label over 63 bytes, an empty label).
pub fn query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(18 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    // RD; one question.
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(out)
}

/// Read the answer `msg` to the query (`id`, `name`, `qtype`).
pub fn parse(msg: &[u8], id: u16, name: &str, qtype: u16) -> Result<Answer, WireError> {
    let mut r = Reader { msg, at: 0 };
    let got_id = r.u16()?;
    let flags = r.u16()?;
    let (qd, an, _ns, ar) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    if got_id != id || !is_response || opcode != 0 {
        return Err(WireError::NotOurs);
    }
    // An error reply may leave the question out (REFUSED, FORMERR, NOTIMP): ours by its ID.
    if qd == 0 && flags & 0xf != 0 {
        return Err(match (flags & 0xf) as u8 {
            3 => WireError::NoSuchName,
            n => WireError::Rcode(n),
        });
    }
    if qd != 1 {
        return Err(WireError::NotOurs);
    }
    let qname = r.name()?;
    let (qt, qc) = (r.u16()?, r.u16()?);
    if !qname.eq_ignore_ascii_case(name) || qt != qtype || qc != CLASS_IN {
        return Err(WireError::NotOurs);
    }
    if flags & 0x0200 != 0 {
        return Err(WireError::Truncated);
    }
    match (flags & 0xf) as u8 {
        0 => {}
        3 => return Err(WireError::NoSuchName),
        n => return Err(WireError::Rcode(n)),
    }
    let mut records = Vec::new();
    for _ in 0..an {
        records.push(r.record()?);
    }
    // The authority section says nothing we use; the additional one may hold SRV targets'
    // addresses. Both are read only to find where they end.
    let mut additional = Vec::new();
    for _ in 0.._ns {
        r.record()?;
    }
    for _ in 0..ar {
        additional.push(r.record()?);
    }
    let mut answer = Answer::default();
    // The names that stand for the one asked: it, and where its CNAMEs lead.
    let mut aliases = vec![name.to_ascii_lowercase()];
    for _ in 0..MAX_CHAIN {
        let Some(next) = records.iter().find_map(|rec| match &rec.data {
            Data::Cname(to)
                if rec
                    .owner
                    .eq_ignore_ascii_case(aliases.last().map_or("", |s| s.as_str())) =>
            {
                Some((to.clone(), rec.ttl))
            }
            _ => None,
        }) else {
            break;
        };
        if aliases.contains(&next.0) {
            break;
        }
        answer.ttl = Some(answer.ttl.map_or(next.1, |t| t.min(next.1)));
        aliases.push(next.0);
    }
    for rec in &records {
        if !aliases.iter().any(|a| a.eq_ignore_ascii_case(&rec.owner)) {
            continue;
        }
        let used = match &rec.data {
            Data::Addr(ip) if rec.rtype == qtype => {
                if !answer.addrs.contains(ip) && answer.addrs.len() < MAX_RECORDS {
                    answer.addrs.push(*ip);
                }
                true
            }
            Data::Srv(s) if qtype == TYPE_SRV => {
                if !answer.srv.contains(s) && answer.srv.len() < MAX_RECORDS {
                    answer.srv.push(s.clone());
                }
                true
            }
            _ => false,
        };
        if used {
            answer.ttl = Some(answer.ttl.map_or(rec.ttl, |t| t.min(rec.ttl)));
        }
    }
    if qtype == TYPE_SRV {
        for rec in additional {
            if let Data::Addr(ip) = rec.data {
                if answer.extra.len() < MAX_RECORDS {
                    answer.extra.push((rec.owner.to_ascii_lowercase(), ip));
                }
            }
        }
    }
    if answer.addrs.is_empty() && answer.srv.is_empty() {
        answer.ttl = None;
    }
    Ok(answer)
}

/// The ID, name and type of the question a message carries (the fuzz target asks what an
/// answer says about its own question, so that random bytes get past the match).
#[cfg(any(test, feature = "fuzzing"))]
pub fn question(msg: &[u8]) -> Option<(u16, String, u16)> {
    let mut r = Reader { msg, at: 12 };
    let id = u16::from_be_bytes([*msg.first()?, *msg.get(1)?]);
    let name = r.name().ok()?;
    let qtype = r.u16().ok()?;
    Some((id, name, qtype))
}

/// One resource record, as far as we read it.
struct Record {
    owner: String,
    rtype: u16,
    ttl: u32,
    data: Data,
}

enum Data {
    Addr(IpAddr),
    Cname(String),
    Srv(Srv),
    Other,
}

/// A cursor over a message.
struct Reader<'a> {
    msg: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.msg.len());
        let end = end.ok_or(WireError::Malformed("cut short"))?;
        let b = &self.msg[self.at..end];
        self.at = end;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A name at the cursor (compression followed), lowercase, without the trailing dot.
    fn name(&mut self) -> Result<String, WireError> {
        let (name, end) = read_name(self.msg, self.at)?;
        self.at = end;
        Ok(name)
    }

    fn record(&mut self) -> Result<Record, WireError> {
        let owner = self.name()?;
        let rtype = self.u16()?;
        let class = self.u16()?;
        // A TTL with the top bit set is read as 0 (RFC 2181 §8).
        let ttl = match self.u32()? {
            t if t > i32::MAX as u32 => 0,
            t => t,
        };
        let len = self.u16()? as usize;
        let start = self.at;
        let msg = self.msg;
        let rdata = self.bytes(len)?;
        let data = match (rtype, class, len) {
            (TYPE_A, CLASS_IN, 4) => {
                Data::Addr(IpAddr::from([rdata[0], rdata[1], rdata[2], rdata[3]]))
            }
            (TYPE_AAAA, CLASS_IN, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(rdata);
                Data::Addr(IpAddr::from(a))
            }
            (TYPE_A | TYPE_AAAA, CLASS_IN, _) => {
                return Err(WireError::Malformed("address length"))
            }
            (TYPE_CNAME, CLASS_IN, _) => {
                let (to, end) = read_name(msg, start)?;
                if end > start + len {
                    return Err(WireError::Malformed("CNAME past its record"));
                }
                Data::Cname(to)
            }
            (TYPE_SRV, CLASS_IN, _) if len >= 7 => {
                let p = |i: usize| u16::from_be_bytes([rdata[i], rdata[i + 1]]);
                let (target, end) = read_name(msg, start + 6)?;
                if end > start + len {
                    return Err(WireError::Malformed("SRV past its record"));
                }
                Data::Srv(Srv {
                    priority: p(0),
                    weight: p(2),
                    port: p(4),
                    target,
                })
            }
            (TYPE_SRV, CLASS_IN, _) => return Err(WireError::Malformed("SRV length")),
            _ => Data::Other,
        };
        Ok(Record {
            owner,
            rtype,
            ttl,
            data,
        })
    }
}

/// The name at `at` in `msg` and where the bytes after it start. Compression pointers must
/// point before the place they are read at; labels read after a jump may lead forward again,
/// but a name is at most 253 bytes long, which ends any loop.
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), WireError> {
    let mut name = String::new();
    let mut end = None;
    loop {
        let len = *msg.get(at).ok_or(WireError::Malformed("name cut short"))? as usize;
        match len {
            0 => {
                return Ok((name, end.unwrap_or(at + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let low = *msg
                    .get(at + 1)
                    .ok_or(WireError::Malformed("pointer cut short"))?;
                let target = ((l & 0x3f) << 8) | low as usize;
                if target >= at {
                    return Err(WireError::Malformed("pointer forward"));
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            l if l & 0xc0 != 0 => return Err(WireError::Malformed("label type")),
            l => {
                let label = msg
                    .get(at + 1..at + 1 + l)
                    .ok_or(WireError::Malformed("label cut short"))?;
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    // Names we use are hostnames; anything else is kept visible but inert.
                    let c = if b.is_ascii_graphic() && b != b'.' {
                        b.to_ascii_lowercase() as char
                    } else {
                        '?'
                    };
                    name.push(c);
                }
                if name.len() > MAX_NAME {
                    return Err(WireError::Malformed("name too long"));
                }
                at += 1 + l;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An answer to `query` with these answer and additional records: (owner, type, ttl,
    /// rdata). Names are written uncompressed.
    pub fn answer(
        query: &[u8],
        rcode: u8,
        answers: &[(&str, u16, u32, Vec<u8>)],
        additional: &[(&str, u16, u32, Vec<u8>)],
    ) -> Vec<u8> {
        let mut m = query.to_vec();
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        m[10..12].copy_from_slice(&(additional.len() as u16).to_be_bytes());
        for (owner, t, ttl, data) in answers.iter().chain(additional) {
            m.extend_from_slice(&encode_name(owner));
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&1u16.to_be_bytes());
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    pub fn encode_name(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in name.split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    pub fn srv_data(priority: u16, weight: u16, port: u16, target: &str) -> Vec<u8> {
        let mut d = Vec::new();
        for v in [priority, weight, port] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d.extend_from_slice(&encode_name(target));
        d
    }

    #[test]
    fn a_query_is_written_as_rfc_1035_says() {
        let q = query(0x1234, "api.internal", TYPE_A).unwrap();
        assert_eq!(
            q,
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03api\x08internal\x00\x00\x01\x00\x01"
        );
        assert!(query(1, "a..b", TYPE_A).is_none());
        assert!(query(1, &"x".repeat(64), TYPE_A).is_none());
    }

    #[test]
    fn addresses_follow_cnames_and_take_the_least_ttl() {
        let q = query(7, "api.test", TYPE_A).unwrap();
        let m = answer(
            &q,
            0,
            &[
                ("api.test", TYPE_CNAME, 300, encode_name("real.test")),
                ("real.test", TYPE_A, 30, vec![10, 0, 0, 5]),
                ("real.test", TYPE_A, 60, vec![10, 0, 0, 6]),
                ("other.test", TYPE_A, 1, vec![10, 0, 0, 7]),
            ],
            &[],
        );
        let a = parse(&m, 7, "api.test", TYPE_A).unwrap();
        assert_eq!(
            a.addrs,
            vec![IpAddr::from([10, 0, 0, 5]), IpAddr::from([10, 0, 0, 6])]
        );
        assert_eq!(a.ttl, Some(30));
    }

    #[test]
    fn errors_and_strangers_are_told_apart() {
        let q = query(9, "x.test", TYPE_AAAA).unwrap();
        assert_eq!(
            parse(&answer(&q, 3, &[], &[]), 9, "x.test", TYPE_AAAA),
            Err(WireError::NoSuchName)
        );
        assert_eq!(
            parse(&answer(&q, 2, &[], &[]), 9, "x.test", TYPE_AAAA),
            Err(WireError::Rcode(2))
        );
        assert_eq!(
            parse(&answer(&q, 0, &[], &[]), 10, "x.test", TYPE_AAAA),
            Err(WireError::NotOurs)
        );
        assert_eq!(
            parse(&answer(&q, 0, &[], &[]), 9, "y.test", TYPE_AAAA),
            Err(WireError::NotOurs)
        );
        let mut tc = answer(&q, 0, &[], &[]);
        tc[2] |= 0x02;
        assert_eq!(
            parse(&tc, 9, "x.test", TYPE_AAAA),
            Err(WireError::Truncated)
        );
        let empty = parse(&answer(&q, 0, &[], &[]), 9, "x.test", TYPE_AAAA).unwrap();
        assert!(empty.addrs.is_empty() && empty.ttl.is_none());
        // Cut anywhere: malformed, never a panic.
        let full = answer(&q, 0, &[("x.test", TYPE_AAAA, 5, vec![0; 16])], &[]);
        for cut in 0..full.len() {
            assert!(parse(&full[..cut], 9, "x.test", TYPE_AAAA).is_err());
        }
        assert_eq!(
            parse(&full, 9, "x.test", TYPE_AAAA).unwrap().addrs,
            vec![IpAddr::from([0u8; 16])]
        );
    }

    #[test]
    fn srv_records_and_their_targets_addresses() {
        let q = query(3, "_http._tcp.api.test", TYPE_SRV).unwrap();
        let m = answer(
            &q,
            0,
            &[
                (
                    "_http._tcp.api.test",
                    TYPE_SRV,
                    20,
                    srv_data(10, 5, 8080, "a.test"),
                ),
                (
                    "_http._tcp.api.test",
                    TYPE_SRV,
                    40,
                    srv_data(20, 0, 8081, "B.test."),
                ),
            ],
            &[("a.test", TYPE_A, 20, vec![127, 0, 0, 2])],
        );
        let a = parse(&m, 3, "_http._tcp.api.test", TYPE_SRV).unwrap();
        assert_eq!(a.srv.len(), 2);
        assert_eq!(
            a.srv[1],
            Srv {
                priority: 20,
                weight: 0,
                port: 8081,
                target: "b.test".into()
            }
        );
        assert_eq!(
            a.extra,
            vec![("a.test".to_string(), IpAddr::from([127, 0, 0, 2]))]
        );
        assert_eq!(a.ttl, Some(20));
    }

    #[test]
    fn compression_pointers_may_only_point_back() {
        let q = query(4, "p.test", TYPE_A).unwrap();
        // The answer's owner as a pointer to the question's name (offset 12).
        let mut m = q.clone();
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 1;
        m.extend_from_slice(&[0xc0, 12]);
        m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4]);
        let a = parse(&m, 4, "p.test", TYPE_A).unwrap();
        assert_eq!(
            (a.addrs, a.ttl),
            (vec![IpAddr::from([1, 2, 3, 4])], Some(9))
        );
        // A pointer to itself: refused.
        let at = q.len();
        let mut looped = m.clone();
        looped[at] = 0xc0 | (at >> 8) as u8;
        looped[at + 1] = at as u8;
        assert!(matches!(
            parse(&looped, 4, "p.test", TYPE_A),
            Err(WireError::Malformed(_))
        ));
    }
}
