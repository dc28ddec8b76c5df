//! The rewrite planner: from an announcement and the control connection's
//! addresses on both sides of the gateway, decide the text the far side
//! must see and the pinhole that lets exactly the announced connection in.

use std::net::{IpAddr, SocketAddr};

use super::parse::{format_host_port, HostPort};
use super::session::Form;
use crate::pinhole::Pinhole;
use crate::reason::Reason;

/// The control connection as seen on each side of the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The client's own address (before source NAT).
    pub client: SocketAddr,
    /// The client's address as the server sees it (after source NAT).
    pub client_public: SocketAddr,
    /// The address written into PORT/EPRT for the server: the public
    /// address's own, or what a further NAT beyond the gateway presents
    /// for it (configured, since conntrack cannot see that NAT).
    pub client_announced: IpAddr,
    /// The server's address as the client sees it (before destination NAT).
    pub server_public: SocketAddr,
    /// The address written into 227 for the client; like
    /// `client_announced`, for the server's public address.
    pub server_announced: IpAddr,
    /// The server's own address (after destination NAT).
    pub server_real: SocketAddr,
}

/// Validation switches. The defaults (all off) are the safe ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Accept data ports below 1024 (refused by default: a pinhole to a
    /// privileged port is how FTP bounce attacks reach other services).
    pub allow_privileged_ports: bool,
    /// Accept an address in PORT/EPRT/227 that is not the announcing
    /// peer's own (third-party transfers, RFC 959 §2.3; off by default,
    /// RFC 2577 §3 explains the bounce attack).
    pub allow_third_party: bool,
}

/// What to do for one accepted announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Replacement for the announcement's address-and-port text, when the
    /// far side must see something else.
    pub replacement: Option<Vec<u8>>,
    /// The pinhole to install before the announcement is released.
    pub pinhole: Pinhole,
}

/// How many public ports are tried for one translated active-mode
/// connection before giving up.
const PORT_TRIES: u16 = 64;

/// Plans one announcement. `port_free` tells whether a pinhole's
/// translated (public) address and port are still free.
pub fn plan(
    form: Form,
    hp: &HostPort,
    ep: &Endpoints,
    policy: &Policy,
    port_free: impl Fn(&Pinhole) -> bool,
) -> Result<Plan, Reason> {
    if hp.port == 0 {
        return Err(Reason::PortZero);
    }
    if hp.port < 1024 && !policy.allow_privileged_ports {
        return Err(Reason::PrivilegedPort);
    }
    if let Some(addr) = hp.addr {
        if addr.is_ipv4() != ep.client.is_ipv4() {
            return Err(Reason::FamilyMismatch);
        }
    }
    match form {
        Form::Port | Form::Eprt => plan_active(hp, ep, policy, port_free),
        Form::Pasv227 | Form::Epsv229 => plan_passive(hp, ep, policy),
    }
}

/// Active mode: the server connects to the client. Behind source NAT the
/// client's address is replaced by the public one, and the pinhole carries
/// the DNAT back to the client. A client configured with its external
/// address already announces the session's public address (or what a
/// further NAT presents for it): that is its own too, and gets the same
/// pinhole, the text kept when it is already right.
///
/// Without source NAT here, a further 1:1 NAT that conntrack cannot see
/// may still present the client's own address as another (a client on
/// this host, `[[nat_override]]` on its interface): the text then names
/// that outer address, which the server must dial (RFC 959 §4.1.2: PORT
/// names where the client listens, as the server reaches it), while the
/// pinhole stays server -> the client's own address, since the further NAT
/// delivers the connection already translated.
fn plan_active(
    hp: &HostPort,
    ep: &Endpoints,
    policy: &Policy,
    port_free: impl Fn(&Pinhole) -> bool,
) -> Result<Plan, Reason> {
    let announced = hp.addr.unwrap_or(ep.client.ip());
    let translated = ep.client_public.ip() != ep.client.ip();
    let further = ep.client_announced != ep.client.ip();
    let names_public = (translated && announced == ep.client_public.ip())
        || (further && announced == ep.client_announced);
    if announced != ep.client.ip() && !names_public && !policy.allow_third_party {
        return Err(Reason::ThirdPartyAddress);
    }
    let server = ep.server_real.ip();
    if !translated {
        let own = if names_public {
            ep.client.ip()
        } else {
            announced
        };
        let outer = further && announced == ep.client.ip();
        return Ok(Plan {
            replacement: outer
                .then(|| format_host_port(ep.client_announced, hp.port, hp.delimiter)),
            pinhole: Pinhole {
                src: server,
                dst: own,
                dport: hp.port,
                dnat: None,
            },
        });
    }
    let public = ep.client_public.ip();
    let listener = if names_public {
        ep.client.ip()
    } else {
        announced
    };
    let real = SocketAddr::new(listener, hp.port);
    // Keep the client's port when it is free on the public address (as
    // nf_nat_ftp does), else take the next free one.
    let pinhole = (0..PORT_TRIES)
        .map(|i| Pinhole {
            src: server,
            dst: public,
            dport: nth_candidate_port(hp.port, i),
            dnat: Some(real),
        })
        .find(|p| port_free(p))
        .ok_or(Reason::NoPublicPort)?;
    let text_right = announced == ep.client_announced && pinhole.dport == hp.port;
    Ok(Plan {
        replacement: (!text_right)
            .then(|| format_host_port(ep.client_announced, pinhole.dport, hp.delimiter)),
        pinhole,
    })
}

/// The `i`-th public port tried for a client port: the port itself, then
/// the following unprivileged ports, wrapping within 1024..=65535.
fn nth_candidate_port(port: u16, i: u16) -> u16 {
    if i == 0 {
        return port;
    }
    const SPAN: u32 = 65536 - 1024;
    let base = (port as u32 + SPAN - 1024) % SPAN;
    (1024 + (base + i as u32) % SPAN) as u16
}

/// Passive mode: the client connects to the server. Behind destination NAT
/// the server's private address is replaced by the public one (227 only:
/// 229 carries no address) and the pinhole carries the DNAT to the server.
///
/// Without destination NAT here, a further 1:1 NAT that conntrack cannot
/// see may present the server's own address as another (a server on this
/// host, `[[nat_override]]` on its interface): a 227 naming the server's
/// own address is rewritten to that outer one, which the client must dial
/// (RFC 959 §4.1.2: the 227 names where the server listens, as the client
/// reaches it), while the pinhole stays client -> the server's own
/// address, since the further NAT delivers the connection already
/// translated. A server that already names the outer address (vsftpd's
/// `pasv_address`) is left alone, with the same pinhole.
fn plan_passive(hp: &HostPort, ep: &Endpoints, policy: &Policy) -> Result<Plan, Reason> {
    // A server may already announce what a further NAT presents for it
    // (e.g. vsftpd's pasv_address): that is its own address too.
    let own = [
        ep.server_real.ip(),
        ep.server_public.ip(),
        ep.server_announced,
    ];
    if let Some(addr) = hp.addr {
        if !own.contains(&addr) && !policy.allow_third_party {
            return Err(Reason::ThirdPartyAddress);
        }
    }
    if ep.server_public.ip() == ep.server_real.ip() {
        let real = ep.server_real.ip();
        let (target, replacement) = match hp.addr {
            // A third party (allowed by policy): exactly what was named.
            Some(addr) if !own.contains(&addr) => (addr, None),
            Some(addr) if addr == real && ep.server_announced != real => (
                real,
                Some(format_host_port(ep.server_announced, hp.port, hp.delimiter)),
            ),
            _ => (real, None),
        };
        return Ok(Plan {
            replacement,
            pinhole: Pinhole {
                src: ep.client.ip(),
                dst: target,
                dport: hp.port,
                dnat: None,
            },
        });
    }
    let public = ep.server_public.ip();
    let replacement = match hp.addr {
        Some(addr) if addr != ep.server_announced => {
            Some(format_host_port(ep.server_announced, hp.port, hp.delimiter))
        }
        _ => None,
    };
    Ok(Plan {
        replacement,
        pinhole: Pinhole {
            src: ep.client.ip(),
            dst: public,
            dport: hp.port,
            dnat: Some(SocketAddr::new(ep.server_real.ip(), hp.port)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftp::parse::{parse_227, parse_229, parse_client_line, ClientLine};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Endpoints with no further NAT beyond the gateway.
    fn endpoints(
        client: &str,
        client_public: &str,
        server_public: &str,
        server_real: &str,
    ) -> Endpoints {
        let (client_public, server_public) = (sa(client_public), sa(server_public));
        Endpoints {
            client: sa(client),
            client_public,
            client_announced: client_public.ip(),
            server_public,
            server_announced: server_public.ip(),
            server_real: sa(server_real),
        }
    }

    fn snat() -> Endpoints {
        endpoints(
            "198.51.100.2:40000",
            "203.0.113.254:40000",
            "203.0.113.10:21",
            "203.0.113.10:21",
        )
    }

    fn dnat() -> Endpoints {
        endpoints(
            "203.0.113.20:40000",
            "203.0.113.20:40000",
            "203.0.113.1:21",
            "192.0.2.10:21",
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn active_behind_a_further_nat_announces_its_address_and_opens_the_gateways() {
        let ep = Endpoints {
            client_announced: ip("198.51.100.77"),
            ..snat()
        };
        let hp = port_line(b"PORT 198,51,100,2,195,80\r\n");
        let p = plan(Form::Port, &hp, &ep, &Policy::default(), |_| true).unwrap();
        assert_eq!(p.replacement.as_deref(), Some(&b"198,51,100,77,195,80"[..]));
        // The further NAT delivers the data connection to the gateway's own
        // public address.
        assert_eq!(p.pinhole.dst, ip("203.0.113.254"));
        assert_eq!(p.pinhole.dnat, Some(sa("198.51.100.2:50000")));
    }

    #[test]
    fn passive_behind_a_further_nat_announces_its_address_and_opens_the_gateways() {
        let ep = Endpoints {
            server_announced: ip("198.51.100.88"),
            ..dnat()
        };
        let hp = parse_227(b"227 Entering Passive Mode (192,0,2,10,195,80)\r\n").unwrap();
        let p = plan(Form::Pasv227, &hp, &ep, &Policy::default(), |_| true).unwrap();
        assert_eq!(p.replacement.as_deref(), Some(&b"198,51,100,88,195,80"[..]));
        assert_eq!(p.pinhole.dst, ip("203.0.113.1"));
        assert_eq!(p.pinhole.dnat, Some(sa("192.0.2.10:50000")));
        // A server that already announces the further NAT's address (as
        // vsftpd's pasv_address does) is left alone and still gets its pinhole.
        let hp = parse_227(b"227 Entering Passive Mode (198,51,100,88,195,80)\r\n").unwrap();
        let p = plan(Form::Pasv227, &hp, &ep, &Policy::default(), |_| true).unwrap();
        assert_eq!(p.replacement, None);
        assert_eq!(p.pinhole.dst, ip("203.0.113.1"));
    }

    fn port_line(l: &[u8]) -> HostPort {
        match parse_client_line(l) {
            ClientLine::Port(hp) | ClientLine::Eprt(hp) => hp,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn active_behind_snat_rewrites_and_maps_back() {
        let hp = port_line(b"PORT 198,51,100,2,195,80\r\n");
        let p = plan(Form::Port, &hp, &snat(), &Policy::default(), |_| true).unwrap();
        assert_eq!(p.replacement.as_deref(), Some(&b"203,0,113,254,195,80"[..]));
        assert_eq!(p.pinhole.src, "203.0.113.10".parse::<IpAddr>().unwrap());
        assert_eq!(p.pinhole.dst, "203.0.113.254".parse::<IpAddr>().unwrap());
        assert_eq!(p.pinhole.dport, 50000);
        assert_eq!(p.pinhole.dnat, Some(sa("198.51.100.2:50000")));
    }

    #[test]
    fn active_naming_its_own_public_address_opens_with_the_dnat_back() {
        // A client configured with its external IP announces the address
        // the gateway's SNAT gives it: kept as it is, mapped back.
        let hp = port_line(b"PORT 203,0,113,254,195,80\r\n");
        let p = plan(Form::Port, &hp, &snat(), &Policy::default(), |_| true).unwrap();
        assert_eq!(p.replacement, None);
        assert_eq!(p.pinhole.dst, ip("203.0.113.254"));
        assert_eq!(p.pinhole.dport, 50000);
        assert_eq!(p.pinhole.dnat, Some(sa("198.51.100.2:50000")));
        // Its public port taken: the text must name the one chosen.
        let p = plan(Form::Port, &hp, &snat(), &Policy::default(), |p| {
            p.dport != 50000
        });
        assert_eq!(
            p.unwrap().replacement.as_deref(),
            Some(&b"203,0,113,254,195,81"[..])
        );
        // Behind a further NAT: the outer address is its own too, and the
        // gateway's public one is rewritten to it.
        let ep = Endpoints {
            client_announced: ip("198.51.100.77"),
            ..snat()
        };
        let outer = port_line(b"EPRT |1|198.51.100.77|50000|\r\n");
        let p = plan(Form::Eprt, &outer, &ep, &Policy::default(), |_| true).unwrap();
        assert_eq!(p.replacement, None);
        assert_eq!(p.pinhole.dnat, Some(sa("198.51.100.2:50000")));
        let p = plan(Form::Port, &hp, &ep, &Policy::default(), |_| true).unwrap();
        assert_eq!(p.replacement.as_deref(), Some(&b"198,51,100,77,195,80"[..]));
        // Without SNAT the gateway's address is not the client's.
        let plain = endpoints(
            "198.51.100.2:40000",
            "198.51.100.2:40000",
            "203.0.113.10:21",
            "203.0.113.10:21",
        );
        assert_eq!(
            plan(Form::Port, &hp, &plain, &Policy::default(), |_| true),
            Err(Reason::ThirdPartyAddress)
        );
    }

    #[test]
    fn active_port_in_use_moves_to_next() {
        let hp = port_line(b"EPRT |1|198.51.100.2|50000|\r\n");
        let p = plan(Form::Eprt, &hp, &snat(), &Policy::default(), |p| {
            p.dport != 50000
        })
        .unwrap();
        assert_eq!(p.replacement.as_deref(), Some(&b"203.0.113.254|50001"[..]));
        assert_eq!(p.pinhole.dnat, Some(sa("198.51.100.2:50000")));
    }

    #[test]
    fn active_without_nat_only_opens() {
        let ep = endpoints(
            "[2001:db8:1::2]:40000",
            "[2001:db8:1::2]:40000",
            "[2001:db8:2::10]:21",
            "[2001:db8:2::10]:21",
        );
        let hp = port_line(b"EPRT |2|2001:db8:1::2|50000|\r\n");
        let p = plan(Form::Eprt, &hp, &ep, &Policy::default(), |_| true).unwrap();
        assert_eq!(p.replacement, None);
        assert_eq!(p.pinhole.filter_key().2, 50000);
    }

    #[test]
    fn bounce_and_privileged_are_refused() {
        let hp = port_line(b"PORT 192,0,2,99,195,80\r\n");
        assert_eq!(
            plan(Form::Port, &hp, &snat(), &Policy::default(), |_| true),
            Err(Reason::ThirdPartyAddress)
        );
        let hp = port_line(b"PORT 198,51,100,2,0,25\r\n");
        assert_eq!(
            plan(Form::Port, &hp, &snat(), &Policy::default(), |_| true),
            Err(Reason::PrivilegedPort)
        );
        let hp = port_line(b"EPRT |2|2001:db8::1|5000|\r\n");
        assert_eq!(
            plan(Form::Eprt, &hp, &snat(), &Policy::default(), |_| true),
            Err(Reason::FamilyMismatch)
        );
    }

    #[test]
    fn candidate_ports_stay_unprivileged() {
        assert_eq!(nth_candidate_port(50000, 0), 50000);
        assert_eq!(nth_candidate_port(50000, 1), 50001);
        assert_eq!(nth_candidate_port(65535, 1), 1024);
        assert!((1..PORT_TRIES).all(|i| nth_candidate_port(80, i) >= 1024));
    }

    #[test]
    fn passive_behind_dnat() {
        let hp = parse_227(b"227 Entering Passive Mode (192,0,2,10,39,16).\r\n").unwrap();
        let p = plan(Form::Pasv227, &hp, &dnat(), &Policy::default(), |_| true).unwrap();
        assert_eq!(p.replacement.as_deref(), Some(&b"203,0,113,1,39,16"[..]));
        assert_eq!(p.pinhole.dst, "203.0.113.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.pinhole.dnat, Some(sa("192.0.2.10:10000")));
        let hp = parse_229(b"229 Entering Extended Passive Mode (|||10001|)\r\n").unwrap();
        let p = plan(Form::Epsv229, &hp, &dnat(), &Policy::default(), |_| true).unwrap();
        assert_eq!(p.replacement, None);
        assert_eq!(p.pinhole.dnat, Some(sa("192.0.2.10:10001")));
    }

    /// A server on this host (no NAT here) whose interface address
    /// 192.0.2.10 a further 1:1 NAT presents as 198.51.100.88.
    fn local_server_behind_further_nat() -> Endpoints {
        Endpoints {
            server_announced: ip("198.51.100.88"),
            ..endpoints(
                "203.0.113.20:40000",
                "203.0.113.20:40000",
                "192.0.2.10:21",
                "192.0.2.10:21",
            )
        }
    }

    #[test]
    fn local_server_behind_a_further_nat_announces_the_outer_address() {
        let ep = local_server_behind_further_nat();
        let hp = parse_227(b"227 Entering Passive Mode (192,0,2,10,195,80)\r\n").unwrap();
        let p = plan(Form::Pasv227, &hp, &ep, &Policy::default(), |_| true).unwrap();
        assert_eq!(p.replacement.as_deref(), Some(&b"198,51,100,88,195,80"[..]));
        // The further NAT delivers the connection to the local address.
        let want = Pinhole {
            src: ip("203.0.113.20"),
            dst: ip("192.0.2.10"),
            dport: 50000,
            dnat: None,
        };
        assert_eq!(p.pinhole, want);
        // Already naming the outer address (pasv_address): kept, the same
        // pinhole; a 229 has no address to rewrite.
        let hp = parse_227(b"227 Entering Passive Mode (198,51,100,88,195,80)\r\n").unwrap();
        let p = plan(Form::Pasv227, &hp, &ep, &Policy::default(), |_| true).unwrap();
        assert_eq!((p.replacement, p.pinhole), (None, want));
        let hp = parse_229(b"229 Entering Extended Passive Mode (|||50000|)\r\n").unwrap();
        let p = plan(Form::Epsv229, &hp, &ep, &Policy::default(), |_| true).unwrap();
        assert_eq!((p.replacement, p.pinhole), (None, want));
        // Anything else is still a third party.
        let hp = parse_227(b"227 (192,0,2,99,195,80)\r\n").unwrap();
        assert_eq!(
            plan(Form::Pasv227, &hp, &ep, &Policy::default(), |_| true),
            Err(Reason::ThirdPartyAddress)
        );
    }

    #[test]
    fn local_client_behind_a_further_nat_announces_the_outer_address() {
        // A client on this host, 192.0.2.20, presented as 198.51.100.77.
        let ep = Endpoints {
            client_announced: ip("198.51.100.77"),
            ..endpoints(
                "192.0.2.20:40000",
                "192.0.2.20:40000",
                "203.0.113.10:21",
                "203.0.113.10:21",
            )
        };
        let want = Pinhole {
            src: ip("203.0.113.10"),
            dst: ip("192.0.2.20"),
            dport: 50000,
            dnat: None,
        };
        let hp = port_line(b"PORT 192,0,2,20,195,80\r\n");
        let p = plan(Form::Port, &hp, &ep, &Policy::default(), |_| false).unwrap();
        assert_eq!(p.replacement.as_deref(), Some(&b"198,51,100,77,195,80"[..]));
        assert_eq!(p.pinhole, want, "no public port to find: no DNAT here");
        let hp = port_line(b"EPRT |1|198.51.100.77|50000|\r\n");
        let p = plan(Form::Eprt, &hp, &ep, &Policy::default(), |_| true).unwrap();
        assert_eq!((p.replacement, p.pinhole), (None, want));
        let hp = port_line(b"PORT 192,0,2,99,195,80\r\n");
        assert_eq!(
            plan(Form::Port, &hp, &ep, &Policy::default(), |_| true),
            Err(Reason::ThirdPartyAddress)
        );
    }

    #[test]
    fn passive_from_outside_server_opens_without_rewrite() {
        let hp = parse_227(b"227 Entering Passive Mode (203,0,113,10,39,16).\r\n").unwrap();
        let p = plan(Form::Pasv227, &hp, &snat(), &Policy::default(), |_| true).unwrap();
        assert_eq!(p.replacement, None);
        assert_eq!(p.pinhole.src, "198.51.100.2".parse::<IpAddr>().unwrap());
        assert_eq!(p.pinhole.dnat, None);
        let hp = parse_227(b"227 (192,0,2,99,39,16)\r\n").unwrap();
        assert_eq!(
            plan(Form::Pasv227, &hp, &snat(), &Policy::default(), |_| true),
            Err(Reason::ThirdPartyAddress)
        );
    }
}
