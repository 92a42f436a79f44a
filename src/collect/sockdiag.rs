//! Peers of Unix-domain sockets from the kernel's `sock_diag` netlink interface
//! (`NETLINK_SOCK_DIAG`, `AF_UNIX`, `UDIAG_SHOW_PEER`): for a connected socket (a
//! `socketpair`, an accepted connection) the inode of the other end, so a thread blocked
//! reading one end can be joined to the processes holding the other (their `/proc/PID/fd`
//! links name it `socket:[INODE]`). One dump of the network namespace's Unix sockets per
//! call; needs no privilege. Messages are built and parsed by `netlink-packet-sock-diag`.

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    unix::{ShowFlags, StateFlags, UnixRequest},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};
use std::collections::{BTreeMap, BTreeSet};

/// Bound on the messages one dump may return (a namespace with a million sockets must not
/// make one `why` unbounded).
const MAX_MESSAGES: usize = 1 << 20;

/// The peer inode of each socket of `wanted` that the kernel lists as connected; sockets
/// it does not list (not Unix, unconnected, gone) are absent. `Err` is one line: the
/// netlink socket could not be used (e.g. `unix_diag` not in the kernel).
pub fn unix_peers(wanted: &BTreeSet<u64>) -> Result<BTreeMap<u64, u64>, String> {
    let mut out = BTreeMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let why = |e: std::io::Error| format!("sock_diag (Unix socket peers): {e}");
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(why)?;
    socket.bind_auto().map_err(why)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(why)?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::UnixRequest(UnixRequest {
            state_flags: StateFlags::from_bits_retain(u32::MAX),
            inode: 0,
            show_flags: ShowFlags::PEER,
            cookie: [0xff; 8],
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf[..]);
    socket.send(&buf, 0).map_err(why)?;
    let mut rx = vec![0u8; 64 * 1024];
    let mut seen = 0usize;
    loop {
        rx.clear();
        let n = socket.recv(&mut rx, 0).map_err(why)?;
        if n == 0 {
            return Err("sock_diag (Unix socket peers): the kernel closed the dump".into());
        }
        match parse_batch(&rx[..n], wanted, &mut out)? {
            Batch::Done => return Ok(out),
            Batch::More(k) => seen += k,
        }
        if seen > MAX_MESSAGES {
            return Err(format!(
                "sock_diag (Unix socket peers): over {MAX_MESSAGES} sockets listed, stopped"
            ));
        }
    }
}

enum Batch {
    Done,
    More(usize),
}

/// Parses one datagram of the dump (several netlink messages), keeping `wanted` peers.
fn parse_batch(
    mut bytes: &[u8],
    wanted: &BTreeSet<u64>,
    out: &mut BTreeMap<u64, u64>,
) -> Result<Batch, String> {
    let mut count = 0;
    while !bytes.is_empty() {
        let msg = NetlinkMessage::<SockDiagMessage>::deserialize(bytes)
            .map_err(|e| format!("sock_diag (Unix socket peers): bad answer: {e}"))?;
        let len = msg.header.length as usize;
        match msg.payload {
            NetlinkPayload::Done(_) => return Ok(Batch::Done),
            NetlinkPayload::Error(e) => {
                return Err(format!(
                    "sock_diag (Unix socket peers): the kernel said {e}"
                ));
            }
            NetlinkPayload::InnerMessage(SockDiagMessage::UnixResponse(r)) => {
                let inode = u64::from(r.header.inode);
                if let Some(peer) = r.peer()
                    && wanted.contains(&inode)
                    && peer != 0
                {
                    out.insert(inode, u64::from(peer));
                }
            }
            _ => {}
        }
        count += 1;
        // Messages are 4-byte aligned; a zero length would never advance.
        let step = (len + 3) & !3;
        if len == 0 || step > bytes.len() {
            break;
        }
        bytes = &bytes[step..];
    }
    Ok(Batch::More(count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixStream;

    fn inode(s: &UnixStream) -> u64 {
        let fd = std::os::fd::AsRawFd::as_raw_fd(s);
        std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .expect("fd link")
            .ino()
    }

    #[test]
    fn a_socketpair_ends_are_each_others_peers() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let (ia, ib) = (inode(&a), inode(&b));
        let wanted: BTreeSet<u64> = [ia, ib, 1].into_iter().collect();
        let peers = unix_peers(&wanted).expect("sock_diag answers (unix_diag in the kernel)");
        assert_eq!(peers.get(&ia), Some(&ib));
        assert_eq!(peers.get(&ib), Some(&ia));
        assert!(
            !peers.contains_key(&1),
            "an inode that is no socket is not listed"
        );
        assert!(unix_peers(&BTreeSet::new()).expect("empty").is_empty());
    }
}
