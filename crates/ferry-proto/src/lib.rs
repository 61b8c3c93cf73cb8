//! Sans-IO FTP protocol shared by Ferry's server and client.
//!
//! Nothing here touches a socket, a file or the clock: bytes go in, values come out, and the
//! time is passed in by the caller. That keeps every parser fuzzable and shared.
//!
//! # Layout
//! - [`command`]: the [`Command`] enum and [`parse`](command::parse) for one control line.
//! - [`line`](mod@line): [`LineBuffer`], bounded splitting of the control stream into lines.
//! - [`reply`]: [`Reply`] encoding (single and multi-line) and a streaming [`ReplyDecoder`].
//! - [`hostport`]: `PORT`/`PASV` `h1,h2,h3,h4,p1,p2` and `EPRT`/`EPSV` `|af|addr|port|` codecs.
//! - [`listing`]: `LIST` (`ls -l`), `NLST`, `MLSD`/`MLST` facts, `MDTM` times; listing parsers for clients.
//! - [`text`]: peer-chosen text made safe for terminals and logs (controls, bidi overrides and
//!   invisible characters escaped), shared by the server's logs and the client's output.

pub mod command;
pub mod hostport;
pub mod line;
pub mod listing;
pub mod reply;
pub mod text;

pub use command::{Command, ParseError, SiteCommand};
pub use line::LineBuffer;
pub use reply::{Reply, ReplyDecoder};
