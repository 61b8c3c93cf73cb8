//! Choosing the data connection: `PORT`, `EPRT`, `PASV`, `EPSV`.

use std::net::{IpAddr, SocketAddr};

use ferry_proto::Reply;
use ferry_proto::command::EpsvArg;
use ferry_proto::hostport;
use tracing::{debug, warn};

use crate::data::{DataError, PassivePlan};

use super::*;

impl Session {
    pub(super) fn cmd_active(&mut self, target: SocketAddr, verb: &str) -> Reply {
        let config = &self.shared.config;
        if self.epsv_all {
            return Reply::new(503, format!("{verb} not allowed after EPSV ALL."));
        }
        if !config.active_enabled {
            return Reply::new(
                502,
                "Active mode is disabled on this server; use PASV or EPSV.",
            );
        }
        let peer_ip = self.peer.ip().to_canonical();
        // An unspecified address (lftp sends `EPRT |2|::|port|`) names no host but the
        // client's own: connect back to the control connection's peer, so no bounce is possible.
        let target = if target.ip().to_canonical().is_unspecified() {
            debug!(%target, peer = %peer_ip, "unspecified active address taken as the client's");
            SocketAddr::new(peer_ip, target.port())
        } else {
            target
        };
        if !config.allow_active_foreign_address && target.ip().to_canonical() != peer_ip {
            warn!(
                event = ferry_core::events::BOUNCE_REFUSED,
                protocol = self.protocol(),
                peer = %self.peer,
                user = self.logged_in().map(|l| l.fs.account().name.as_str()),
                command = verb,
                %target,
                reason = "address other than the client's",
                "refused active data address other than the client's (FTP bounce)"
            );
            return Reply::new(
                504,
                format!("{verb} refused: the address must be your own (FTP bounce protection)."),
            );
        }
        if !config.allow_active_privileged_port && target.port() < 1024 {
            warn!(
                event = ferry_core::events::BOUNCE_REFUSED,
                protocol = self.protocol(),
                peer = %self.peer,
                user = self.logged_in().map(|l| l.fs.account().name.as_str()),
                command = verb,
                %target,
                reason = "privileged port",
                "refused active data connection to a privileged port"
            );
            return Reply::new(
                504,
                format!("{verb} refused: ports below 1024 are not allowed."),
            );
        }
        if target.is_ipv6()
            && !matches!(peer_ip, IpAddr::V6(_))
            && !config.allow_active_foreign_address
        {
            return Reply::new(522, "Network protocol not supported, use (1)");
        }
        self.data = DataPlan::Active(target);
        self.passive_expired = false;
        Reply::new(
            200,
            format!("{verb} command successful. Consider using EPSV."),
        )
    }

    pub(super) fn cmd_pasv(&mut self) -> Reply {
        if self.epsv_all {
            return Reply::new(503, "PASV not allowed after EPSV ALL.");
        }
        if !self.shared.config.passive_enabled {
            return Reply::new(
                502,
                "Passive mode is disabled on this server; use PORT or EPRT.",
            );
        }
        let local_ip = self.local.ip().to_canonical();
        let announced = match (
            self.shared.config.masquerade.address_for(self.peer.ip()),
            local_ip,
        ) {
            (Some(a), _) => a,
            (None, IpAddr::V4(v4)) => v4,
            (None, IpAddr::V6(_)) => {
                return Reply::new(522, "PASV cannot carry an IPv6 address; use EPSV.");
            }
        };
        match self.open_passive(local_ip) {
            Ok(port) => Reply::new(
                227,
                hostport::format_pasv_reply_text(std::net::SocketAddrV4::new(announced, port)),
            ),
            Err(r) => r,
        }
    }

    pub(super) fn cmd_epsv(&mut self, arg: EpsvArg) -> Reply {
        let local_ip = self.local.ip().to_canonical();
        let family_hint = if local_ip.is_ipv4() { "(1)" } else { "(2)" };
        match arg {
            EpsvArg::All => {
                self.epsv_all = true;
                return Reply::new(200, "EPSV ALL ok.");
            }
            EpsvArg::Unsupported(_) => {
                return Reply::new(
                    522,
                    format!("Network protocol not supported, use {family_hint}"),
                );
            }
            EpsvArg::V4 if !local_ip.is_ipv4() => {
                return Reply::new(522, "Network protocol not supported, use (2)");
            }
            EpsvArg::V6 if !local_ip.is_ipv6() => {
                return Reply::new(522, "Network protocol not supported, use (1)");
            }
            _ => {}
        }
        if !self.shared.config.passive_enabled {
            return Reply::new(
                502,
                "Passive mode is disabled on this server; use PORT or EPRT.",
            );
        }
        match self.open_passive(local_ip) {
            Ok(port) => Reply::new(229, hostport::format_epsv_reply_text(port)),
            Err(r) => r,
        }
    }

    pub(super) fn open_passive(&mut self, local_ip: IpAddr) -> Result<u16, Reply> {
        // A new PASV replaces (and releases) any earlier listener: a session holds one port.
        self.data = DataPlan::None;
        self.passive_expired = false;
        match PassivePlan::open(local_ip, self.shared.ports.as_ref()) {
            Ok(plan) => {
                let plan = plan.behind(&self.shared.proxy);
                let port = plan.local.port();
                self.data = self.passive_plan(plan);
                Ok(port)
            }
            Err(DataError::PortsExhausted) => {
                Err(Reply::new(425, "No passive port free; try again later."))
            }
            Err(e) => {
                warn!(error = %e, "passive listener failed");
                Err(Reply::new(425, "Can't open passive connection."))
            }
        }
    }

    /// Release a passive listener nobody connected to within `data_connect_timeout` of its
    /// `PASV`/`EPSV`, so sessions that ask for ports and never use them cannot hold the range.
    /// A connection that did arrive is kept (the port goes back all the same) for the
    /// transfer command still to come.
    pub(super) fn expire_passive(&mut self) {
        let DataPlan::Passive(plan) = &self.data else {
            return;
        };
        match plan.accept_now(self.expected_peer()) {
            Some(stream) => self.data = DataPlan::Connected(stream),
            None => {
                debug!(port = plan.local.port(), "passive listener released unused");
                self.data = DataPlan::None;
                self.passive_expired = true;
            }
        }
    }
}
