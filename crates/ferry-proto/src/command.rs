//! FTP commands (RFC 959, 2389, 2428, 3659, 775, 4217) and their parser.
//!
//! [`parse`] takes one control line *without* its CRLF and returns a typed [`Command`].
//! Leading Telnet IAC sequences (IP, DM/Synch, as sent before `ABOR`) are skipped.
//! Verbs are case-insensitive. Path arguments must be valid UTF-8 and may not contain NUL.

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};

use crate::hostport::{self, HostPortError};
use crate::listing;

/// Representation type set by `TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    /// `TYPE A` (optionally `A N`): ASCII with CRLF line endings on the wire.
    Ascii,
    /// `TYPE I` or `TYPE L 8`: bytes as they are.
    Image,
}

/// Argument of `EPSV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    /// Plain `EPSV`: use the control connection's address family.
    Any,
    /// `EPSV 1`: IPv4 requested.
    V4,
    /// `EPSV 2`: IPv6 requested.
    V6,
    /// `EPSV ALL`: client promises only EPSV from now on (RFC 2428 §4).
    All,
    /// `EPSV <n>` with an unknown network protocol number.
    Unsupported(u32),
}

/// Options of `LIST`/`NLST` (`-a`, `-l`, ...) and the optional path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListArgs {
    /// `-a` seen: include names starting with `.`.
    pub all: bool,
    /// `-l` seen (for `NLST`: answer in long form).
    pub long: bool,
    /// The path argument after the flags, if any.
    pub path: Option<String>,
}

/// `PROT` levels (RFC 4217).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtLevel {
    /// `C`: clear.
    Clear,
    /// `S`: safe (integrity only).
    Safe,
    /// `E`: confidential.
    Confidential,
    /// `P`: private (TLS).
    Private,
}

/// One parsed control command.
///
/// Strings are the argument as sent (after the single space following the verb), already
/// checked to be UTF-8 without NUL. `Pass` holds a secret: `Debug` formatting shows
/// [`Command::redacted`], so logging a command never logs a password.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(String),
    Acct(String),
    Quit,
    Rein,
    Noop,
    Syst,
    /// `STAT` with no argument (session status) or with a path (listing over control).
    Stat(Option<String>),
    Help(Option<String>),
    Feat,
    /// `OPTS <command> [args]`: the command name uppercased, then its raw arguments.
    Opts {
        command: String,
        args: Option<String>,
    },
    Cwd(String),
    Cdup,
    Pwd,
    Mkd(String),
    Rmd(String),
    Dele(String),
    Rnfr(String),
    Rnto(String),
    Type(TransferType),
    /// `MODE S` is the only mode accepted by the parser; other letters are a 504 at parse time.
    ModeStream,
    /// `STRU F` is the only structure accepted by the parser.
    StruFile,
    /// `ALLO n [R m]`: accepted and ignored (202).
    Allo,
    Rest(u64),
    Retr(String),
    Stor(String),
    /// `STOU` with an optional name hint.
    Stou(Option<String>),
    Appe(String),
    Abor,
    List(ListArgs),
    Nlst(ListArgs),
    Mlsd(Option<String>),
    Mlst(Option<String>),
    Size(String),
    Mdtm(String),
    /// `MFMT YYYYMMDDHHMMSS path`: `unix_secs` is the parsed UTC time.
    Mfmt {
        unix_secs: i64,
        path: String,
    },
    Port(SocketAddrV4),
    Pasv,
    Eprt(SocketAddr),
    Epsv(EpsvArg),
    // RFC 4217 (FTPS); parsed now so the server answers them coherently before TLS lands.
    /// `AUTH <mechanism>`, mechanism uppercased (`TLS`, `SSL`, `TLS-C`, ...).
    Auth(String),
    Pbsz(u64),
    Prot(ProtLevel),
    Ccc,
    /// `SITE <subcommand>`.
    Site(SiteCommand),
}

/// `SITE` subcommands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteCommand {
    /// `SITE CHMOD <octal mode> <path>`; the mode is at most `0o7777`.
    Chmod { mode: u32, path: String },
    /// `SITE HELP`.
    Help,
    /// Any other subcommand (uppercased name), answered `502`.
    Other(String),
}

/// Why a line is not a command we can run. Each maps to exactly one reply code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Unknown verb: `500`.
    #[error("'{0}': command not understood")]
    Unknown(String),
    /// Known verb Ferry deliberately does not implement (e.g. `SMNT`, `MODE B`): `502`/`504`.
    #[error("{0} not implemented")]
    NotImplemented(String),
    /// Known verb, parameter not implemented (e.g. `TYPE E`, `MODE B`, `STRU R`): `504`.
    #[error("{0}")]
    ParameterNotImplemented(String),
    /// Known verb, malformed or missing argument, NUL or invalid UTF-8: `501`.
    #[error("{0}")]
    Syntax(String),
    /// Empty line: `500`.
    #[error("empty command")]
    Empty,
    /// `EPRT` with a network protocol other than 1 (IPv4) or 2 (IPv6): `522` (RFC 2428).
    #[error("Network protocol not supported, use (1,2)")]
    UnsupportedFamily(u32),
}

impl ParseError {
    /// The FTP reply code for this error.
    pub fn code(&self) -> u16 {
        match self {
            ParseError::Unknown(_) | ParseError::Empty => 500,
            ParseError::NotImplemented(_) => 502,
            ParseError::ParameterNotImplemented(_) => 504,
            ParseError::Syntax(_) => 501,
            ParseError::UnsupportedFamily(_) => 522,
        }
    }
}

impl Command {
    /// The verb as it would be sent (upper case), e.g. `"RETR"`. Aliases (`XCWD`, `XPWD`, ...)
    /// give their RFC 959 names.
    pub fn verb(&self) -> &'static str {
        use Command::*;
        match self {
            User(_) => "USER",
            Pass(_) => "PASS",
            Acct(_) => "ACCT",
            Quit => "QUIT",
            Rein => "REIN",
            Noop => "NOOP",
            Syst => "SYST",
            Stat(_) => "STAT",
            Help(_) => "HELP",
            Feat => "FEAT",
            Opts { .. } => "OPTS",
            Cwd(_) => "CWD",
            Cdup => "CDUP",
            Pwd => "PWD",
            Mkd(_) => "MKD",
            Rmd(_) => "RMD",
            Dele(_) => "DELE",
            Rnfr(_) => "RNFR",
            Rnto(_) => "RNTO",
            Type(_) => "TYPE",
            ModeStream => "MODE",
            StruFile => "STRU",
            Allo => "ALLO",
            Rest(_) => "REST",
            Retr(_) => "RETR",
            Stor(_) => "STOR",
            Stou(_) => "STOU",
            Appe(_) => "APPE",
            Abor => "ABOR",
            List(_) => "LIST",
            Nlst(_) => "NLST",
            Mlsd(_) => "MLSD",
            Mlst(_) => "MLST",
            Size(_) => "SIZE",
            Mdtm(_) => "MDTM",
            Mfmt { .. } => "MFMT",
            Port(_) => "PORT",
            Pasv => "PASV",
            Eprt(_) => "EPRT",
            Epsv(_) => "EPSV",
            Auth(_) => "AUTH",
            Pbsz(_) => "PBSZ",
            Prot(_) => "PROT",
            Ccc => "CCC",
            Site(_) => "SITE",
        }
    }

    /// A rendering safe for logs: `PASS` arguments are replaced by `****`.
    ///
    /// `ACCT` arguments are masked too (some proxies carry passwords in them), and control
    /// characters in arguments are shown as `?` so a hostile name can't forge log lines.
    pub fn redacted(&self) -> String {
        use Command::*;
        let arg: Option<String> = match self {
            Pass(_) | Acct(_) => Some("****".into()),
            User(s) | Cwd(s) | Mkd(s) | Rmd(s) | Dele(s) | Rnfr(s) | Rnto(s) | Retr(s)
            | Stor(s) | Appe(s) | Size(s) | Mdtm(s) | Auth(s) => Some(s.clone()),
            Stat(o) | Help(o) | Stou(o) | Mlsd(o) | Mlst(o) => o.clone(),
            Opts { command, args } => Some(match args {
                Some(a) => format!("{command} {a}"),
                None => command.clone(),
            }),
            Type(TransferType::Ascii) => Some("A".into()),
            Type(TransferType::Image) => Some("I".into()),
            ModeStream => Some("S".into()),
            StruFile => Some("F".into()),
            Rest(n) | Pbsz(n) => Some(n.to_string()),
            Mfmt { unix_secs, path } => {
                Some(format!("{} {path}", listing::format_mdtm(*unix_secs)))
            }
            Site(SiteCommand::Chmod { mode, path }) => Some(format!("CHMOD {mode:o} {path}")),
            Site(SiteCommand::Help) => Some("HELP".into()),
            Site(SiteCommand::Other(name)) => Some(name.clone()),
            Port(a) => Some(hostport::format_port_arg(*a)),
            Eprt(a) => Some(hostport::format_eprt_arg(*a)),
            Epsv(EpsvArg::Any) => None,
            Epsv(EpsvArg::V4) => Some("1".into()),
            Epsv(EpsvArg::V6) => Some("2".into()),
            Epsv(EpsvArg::All) => Some("ALL".into()),
            Epsv(EpsvArg::Unsupported(n)) => Some(n.to_string()),
            List(a) | Nlst(a) => {
                let flags = match (a.all, a.long) {
                    (true, true) => Some("-al"),
                    (true, false) => Some("-a"),
                    (false, true) => Some("-l"),
                    (false, false) => None,
                };
                let parts: Vec<&str> = flags.into_iter().chain(a.path.as_deref()).collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            }
            Prot(level) => Some(
                match level {
                    ProtLevel::Clear => "C",
                    ProtLevel::Safe => "S",
                    ProtLevel::Confidential => "E",
                    ProtLevel::Private => "P",
                }
                .into(),
            ),
            Quit | Rein | Noop | Syst | Feat | Cdup | Pwd | Allo | Abor | Pasv | Ccc => None,
        };
        let mut out = String::from(self.verb());
        if let Some(arg) = arg {
            out.push(' ');
            out.extend(arg.chars().map(|c| if c.is_control() { '?' } else { c }));
        }
        out
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Command").field(&self.redacted()).finish()
    }
}

/// Longest unknown verb echoed back in a `500` reply.
const MAX_VERB_SHOWN: usize = 16;
/// Longest verb we know (`MLSD`, `RETR`, ...): anything longer is unknown without more work.
const MAX_VERB_LEN: usize = 4;

/// Verbs of RFC 959 and friends that Ferry deliberately answers with `502`.
const NOT_IMPLEMENTED: &[&str] = &[
    "SMNT", "LPRT", "LPSV", "HOST", "LANG", "CLNT", "MFCT", "MFF", "XRSQ", "XRCP", "XSEN", "XSEM",
    "XMAS", "MLFL", "MAIL", "MSND", "MSOM", "MSAM", "MRSQ", "MRCP", "ADAT", "MIC", "CONF", "ENC",
    "XCRC", "XMD5", "HASH",
];

/// Skip Telnet commands a client may put before a verb: `IAC x` pairs (IP, DM, ...), `IAC
/// WILL/WONT/DO/DONT opt` triples, and a bare DM (`0xF2`) delivered as urgent data.
fn skip_telnet(mut line: &[u8]) -> &[u8] {
    loop {
        line = match line {
            [0xFF, 0xFB..=0xFE, _, rest @ ..] => rest,
            [0xFF, _, rest @ ..] => rest,
            [0xFF] => &[],
            [0xF2, rest @ ..] => rest,
            _ => return line,
        };
    }
}

/// The unknown verb as it may be echoed: upper case, printable ASCII, bounded.
fn shown_verb(verb: &[u8]) -> String {
    verb.iter()
        .take(MAX_VERB_SHOWN)
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b.to_ascii_uppercase())
            } else {
                '?'
            }
        })
        .collect()
}

fn syntax(msg: impl Into<String>) -> ParseError {
    ParseError::Syntax(msg.into())
}

fn not_implemented(msg: impl Into<String>) -> ParseError {
    ParseError::ParameterNotImplemented(msg.into())
}

/// The bytes after `VERB `: absent (no space), or possibly empty.
struct Arg<'a> {
    verb: &'static str,
    raw: Option<&'a [u8]>,
}

impl<'a> Arg<'a> {
    /// The argument as text, `None` if absent or empty.
    fn optional(&self) -> Result<Option<&'a str>, ParseError> {
        match self.raw {
            None | Some([]) => Ok(None),
            Some(raw) => std::str::from_utf8(raw)
                .map(Some)
                .map_err(|_| syntax(format!("{}: argument is not valid UTF-8", self.verb))),
        }
    }

    /// The argument verbatim, which must be present and non-empty.
    fn required(&self) -> Result<&'a str, ParseError> {
        self.optional()?
            .ok_or_else(|| syntax(format!("{} requires an argument", self.verb)))
    }

    /// The argument trimmed of surrounding whitespace, which must be non-empty.
    fn required_trimmed(&self) -> Result<&'a str, ParseError> {
        match self.required()?.trim() {
            "" => Err(syntax(format!("{} requires an argument", self.verb))),
            s => Ok(s),
        }
    }

    fn optional_string(&self) -> Result<Option<String>, ParseError> {
        Ok(self.optional()?.map(str::to_string))
    }

    fn required_string(&self) -> Result<String, ParseError> {
        self.required().map(str::to_string)
    }
}

/// Decimal `u64`: ASCII digits only, no sign, no overflow.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_type(arg: &str) -> Result<TransferType, ParseError> {
    let toks: Vec<String> = arg
        .split_ascii_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    let toks: Vec<&str> = toks.iter().map(String::as_str).collect();
    match toks.as_slice() {
        ["A"] | ["A", "N"] => Ok(TransferType::Ascii),
        ["I"] => Ok(TransferType::Image),
        ["L", "8"] => Ok(TransferType::Image),
        ["A", "T" | "C"] | ["E"] | ["E", "N" | "T" | "C"] => Err(not_implemented(format!(
            "TYPE {} not implemented",
            toks.join(" ")
        ))),
        ["L", n] if decimal(n).is_some() => {
            if decimal(n) == Some(8) {
                Ok(TransferType::Image)
            } else {
                Err(not_implemented(format!("TYPE L {n} not implemented")))
            }
        }
        _ => Err(syntax("TYPE: unrecognised type")),
    }
}

fn parse_epsv(arg: Option<&str>) -> Result<EpsvArg, ParseError> {
    let a = arg.unwrap_or("").trim();
    if a.is_empty() {
        return Ok(EpsvArg::Any);
    }
    if a.eq_ignore_ascii_case("ALL") {
        return Ok(EpsvArg::All);
    }
    match decimal(a).map(u32::try_from) {
        Some(Ok(1)) => Ok(EpsvArg::V4),
        Some(Ok(2)) => Ok(EpsvArg::V6),
        Some(Ok(n)) => Ok(EpsvArg::Unsupported(n)),
        _ => Err(syntax("EPSV: expected 1, 2 or ALL")),
    }
}

/// Leading `-flags` tokens (letters only), then the path. `LIST -la dir`, `NLST -a`.
fn parse_list_args(arg: Option<&str>) -> ListArgs {
    let mut rest = arg.unwrap_or("");
    let mut args = ListArgs::default();
    while let Some(after_dash) = rest.strip_prefix('-') {
        let end = after_dash.find([' ', '\t']).unwrap_or(after_dash.len());
        let flags = &after_dash[..end];
        if flags.is_empty() || !flags.bytes().all(|b| b.is_ascii_alphabetic()) {
            break;
        }
        args.all |= flags.contains(['a', 'A']);
        args.long |= flags.contains('l');
        rest = after_dash[end..].trim_start_matches([' ', '\t']);
    }
    args.path = (!rest.is_empty()).then(|| rest.to_string());
    args
}

fn parse_allo(arg: &str) -> Result<Command, ParseError> {
    let toks: Vec<&str> = arg.split_ascii_whitespace().collect();
    let ok = match toks.as_slice() {
        [n] => decimal(n).is_some(),
        [n, r, m] => decimal(n).is_some() && r.eq_ignore_ascii_case("R") && decimal(m).is_some(),
        _ => false,
    };
    if ok {
        Ok(Command::Allo)
    } else {
        Err(syntax("ALLO: expected a decimal size"))
    }
}

fn parse_mfmt(arg: &str) -> Result<Command, ParseError> {
    let (time, path) = arg
        .split_once(' ')
        .ok_or_else(|| syntax("MFMT requires a time and a path"))?;
    let unix_secs = listing::parse_mdtm(time)
        .ok_or_else(|| syntax("MFMT: bad time, expected YYYYMMDDHHMMSS"))?;
    if path.is_empty() {
        return Err(syntax("MFMT requires a time and a path"));
    }
    Ok(Command::Mfmt {
        unix_secs,
        path: path.to_string(),
    })
}

fn parse_site(arg: &str) -> Result<SiteCommand, ParseError> {
    let (name, rest) = match arg.trim_start().split_once(' ') {
        Some((n, r)) => (n, r),
        None => (arg.trim(), ""),
    };
    let name = name.to_ascii_uppercase();
    match name.as_str() {
        "CHMOD" => {
            let (mode, path) = rest
                .trim_start()
                .split_once(' ')
                .ok_or_else(|| syntax("SITE CHMOD requires a mode and a path"))?;
            let mode = u32::from_str_radix(mode, 8)
                .ok()
                .filter(|m| *m <= 0o7777 && !mode.is_empty() && mode.len() <= 5)
                .ok_or_else(|| syntax("SITE CHMOD: the mode must be octal, e.g. 644"))?;
            if path.is_empty() {
                return Err(syntax("SITE CHMOD requires a mode and a path"));
            }
            Ok(SiteCommand::Chmod {
                mode,
                path: path.to_string(),
            })
        }
        "HELP" => Ok(SiteCommand::Help),
        _ => Ok(SiteCommand::Other(
            name.chars().take(MAX_VERB_SHOWN).collect(),
        )),
    }
}

fn parse_opts(arg: &str) -> Command {
    let (command, args) = match arg.split_once([' ', '\t']) {
        Some((c, a)) => (c, a.trim()),
        None => (arg, ""),
    };
    Command::Opts {
        command: command.to_ascii_uppercase(),
        args: (!args.is_empty()).then(|| args.to_string()),
    }
}

fn host_port_error(verb: &str, e: HostPortError) -> ParseError {
    match e {
        HostPortError::UnsupportedFamily(n) => ParseError::UnsupportedFamily(n),
        HostPortError::Malformed(m) => syntax(format!("{verb}: {m}")),
    }
}

/// Parse one control line (without CRLF). Never panics, whatever the bytes.
///
/// The verb is separated from its argument by exactly one space; further spaces belong to the
/// argument (so `RETR  a` names ` a`). Numeric and keyword arguments (`TYPE`, `REST`, `PORT`,
/// ...) are trimmed; path arguments are kept verbatim. `PASS` with no argument is an empty
/// password, as anonymous clients send. Arguments of verbs that take none are ignored.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    use Command::*;
    let line = skip_telnet(line);
    let line = match line.iter().position(|&b| b != b' ' && b != b'\t') {
        Some(i) => &line[i..],
        None => return Err(ParseError::Empty),
    };
    if line.contains(&0) {
        return Err(syntax("NUL byte in command"));
    }
    let (verb_bytes, raw) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    if verb_bytes.len() > MAX_VERB_LEN || !verb_bytes.iter().all(u8::is_ascii_alphanumeric) {
        return Err(ParseError::Unknown(shown_verb(verb_bytes)));
    }
    let mut upper = [0u8; MAX_VERB_LEN];
    for (u, b) in upper.iter_mut().zip(verb_bytes) {
        *u = b.to_ascii_uppercase();
    }
    let verb = std::str::from_utf8(&upper[..verb_bytes.len()]).unwrap_or_default();
    let Some(canonical) = canonical_verb(verb) else {
        if let Some(&v) = NOT_IMPLEMENTED.iter().find(|&&v| v == verb) {
            return Err(ParseError::NotImplemented(v.to_string()));
        }
        return Err(ParseError::Unknown(shown_verb(verb_bytes)));
    };
    let arg = Arg {
        verb: canonical,
        raw,
    };

    Ok(match canonical {
        "USER" => User(arg.required_string()?),
        "PASS" => Pass(arg.optional()?.unwrap_or_default().to_string()),
        "ACCT" => Acct(arg.required_string()?),
        "QUIT" => Quit,
        "REIN" => Rein,
        "NOOP" => Noop,
        "SYST" => Syst,
        "STAT" => Stat(arg.optional_string()?),
        "HELP" => Help(arg.optional_string()?),
        "FEAT" => Feat,
        "OPTS" => parse_opts(arg.required_trimmed()?),
        "CWD" => Cwd(arg.required_string()?),
        "CDUP" => Cdup,
        "PWD" => Pwd,
        "MKD" => Mkd(arg.required_string()?),
        "RMD" => Rmd(arg.required_string()?),
        "DELE" => Dele(arg.required_string()?),
        "RNFR" => Rnfr(arg.required_string()?),
        "RNTO" => Rnto(arg.required_string()?),
        "TYPE" => Type(parse_type(arg.required_trimmed()?)?),
        "MODE" => match arg.required_trimmed()?.to_ascii_uppercase().as_str() {
            "S" => ModeStream,
            m @ ("B" | "C" | "Z") => {
                return Err(not_implemented(format!("MODE {m} not implemented")));
            }
            _ => return Err(syntax("MODE: unrecognised mode")),
        },
        "STRU" => match arg.required_trimmed()?.to_ascii_uppercase().as_str() {
            "F" => StruFile,
            s @ ("R" | "P") => return Err(not_implemented(format!("STRU {s} not implemented"))),
            _ => return Err(syntax("STRU: unrecognised structure")),
        },
        "ALLO" => parse_allo(arg.required_trimmed()?)?,
        "REST" => Rest(
            decimal(arg.required_trimmed()?)
                .ok_or_else(|| syntax("REST: expected a decimal offset"))?,
        ),
        "RETR" => Retr(arg.required_string()?),
        "STOR" => Stor(arg.required_string()?),
        "STOU" => Stou(arg.optional_string()?),
        "APPE" => Appe(arg.required_string()?),
        "ABOR" => Abor,
        "LIST" => List(parse_list_args(arg.optional()?)),
        "NLST" => Nlst(parse_list_args(arg.optional()?)),
        "MLSD" => Mlsd(arg.optional_string()?),
        "MLST" => Mlst(arg.optional_string()?),
        "SIZE" => Size(arg.required_string()?),
        "MDTM" => Mdtm(arg.required_string()?),
        "MFMT" => parse_mfmt(arg.required()?)?,
        "SITE" => Site(parse_site(arg.required()?)?),
        "PORT" => Port(
            hostport::parse_port_arg(arg.required_trimmed()?)
                .map_err(|e| host_port_error("PORT", e))?,
        ),
        "PASV" => Pasv,
        "EPRT" => Eprt(
            hostport::parse_eprt_arg(arg.required_trimmed()?)
                .map_err(|e| host_port_error("EPRT", e))?,
        ),
        "EPSV" => Epsv(parse_epsv(arg.optional()?)?),
        "AUTH" => Auth(arg.required_trimmed()?.to_ascii_uppercase()),
        "PBSZ" => Pbsz(
            decimal(arg.required_trimmed()?)
                .ok_or_else(|| syntax("PBSZ: expected a decimal size"))?,
        ),
        "PROT" => Prot(
            match arg.required_trimmed()?.to_ascii_uppercase().as_str() {
                "C" => ProtLevel::Clear,
                "S" => ProtLevel::Safe,
                "E" => ProtLevel::Confidential,
                "P" => ProtLevel::Private,
                _ => return Err(syntax("PROT: expected C, S, E or P")),
            },
        ),
        "CCC" => Ccc,
        _ => return Err(ParseError::Unknown(shown_verb(verb_bytes))),
    })
}

/// The canonical name of a known verb (aliases folded), `None` if unknown.
fn canonical_verb(verb: &str) -> Option<&'static str> {
    const VERBS: &[&str] = &[
        "USER", "PASS", "ACCT", "QUIT", "REIN", "NOOP", "SYST", "STAT", "HELP", "FEAT", "OPTS",
        "CWD", "CDUP", "PWD", "MKD", "RMD", "DELE", "RNFR", "RNTO", "TYPE", "MODE", "STRU", "ALLO",
        "REST", "RETR", "STOR", "STOU", "APPE", "ABOR", "LIST", "NLST", "MLSD", "MLST", "SIZE",
        "MDTM", "MFMT", "PORT", "PASV", "EPRT", "EPSV", "AUTH", "PBSZ", "PROT", "CCC", "SITE",
    ];
    let verb = match verb {
        "XCWD" => "CWD",
        "XCUP" => "CDUP",
        "XPWD" => "PWD",
        "XMKD" => "MKD",
        "XRMD" => "RMD",
        v => v,
    };
    VERBS.iter().copied().find(|&v| v == verb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ok(line: &str) -> Command {
        parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e:?}"))
    }

    fn err(line: &[u8]) -> ParseError {
        match parse(line) {
            Ok(c) => panic!("{line:?} parsed as {c:?}"),
            Err(e) => e,
        }
    }

    fn is_syntax(line: &[u8]) -> bool {
        matches!(parse(line), Err(ParseError::Syntax(_)))
    }

    #[test]
    fn simple_verbs_any_case() {
        assert_eq!(ok("QUIT"), Command::Quit);
        assert_eq!(ok("quit"), Command::Quit);
        assert_eq!(ok("QuIt"), Command::Quit);
        assert_eq!(ok("NOOP"), Command::Noop);
        assert_eq!(ok("SYST"), Command::Syst);
        assert_eq!(ok("FEAT"), Command::Feat);
        assert_eq!(ok("REIN"), Command::Rein);
        assert_eq!(ok("PASV"), Command::Pasv);
        assert_eq!(ok("ABOR"), Command::Abor);
        assert_eq!(ok("CCC"), Command::Ccc);
        assert_eq!(ok("CDUP"), Command::Cdup);
        assert_eq!(ok("xcup"), Command::Cdup);
        assert_eq!(ok("PWD"), Command::Pwd);
        assert_eq!(ok("XPWD"), Command::Pwd);
    }

    #[test]
    fn no_argument_verbs_ignore_arguments() {
        assert_eq!(ok("QUIT now"), Command::Quit);
        assert_eq!(ok("PASV "), Command::Pasv);
        assert_eq!(ok("NOOP x y z"), Command::Noop);
        assert_eq!(parse(b"CDUP \xff\xfe"), Ok(Command::Cdup));
    }

    #[test]
    fn path_arguments_are_verbatim() {
        assert_eq!(ok("RETR a b"), Command::Retr("a b".into()));
        assert_eq!(ok("RETR  a b "), Command::Retr(" a b ".into()));
        assert_eq!(ok("stor /x/y.txt"), Command::Stor("/x/y.txt".into()));
        assert_eq!(ok("CWD dir"), Command::Cwd("dir".into()));
        assert_eq!(ok("XCWD dir"), Command::Cwd("dir".into()));
        assert_eq!(ok("XMKD d"), Command::Mkd("d".into()));
        assert_eq!(ok("MKD d"), Command::Mkd("d".into()));
        assert_eq!(ok("XRMD d"), Command::Rmd("d".into()));
        assert_eq!(ok("RMD d"), Command::Rmd("d".into()));
        assert_eq!(ok("DELE f"), Command::Dele("f".into()));
        assert_eq!(ok("RNFR a"), Command::Rnfr("a".into()));
        assert_eq!(ok("RNTO b"), Command::Rnto("b".into()));
        assert_eq!(ok("APPE f"), Command::Appe("f".into()));
        assert_eq!(ok("SIZE f"), Command::Size("f".into()));
        assert_eq!(ok("MDTM f"), Command::Mdtm("f".into()));
        assert_eq!(ok("RETR café.txt"), Command::Retr("café.txt".into()));
        assert_eq!(ok("RETR a\\b"), Command::Retr("a\\b".into()));
    }

    #[test]
    fn login() {
        assert_eq!(ok("USER anonymous"), Command::User("anonymous".into()));
        assert_eq!(ok("PASS  secret "), Command::Pass(" secret ".into()));
        assert_eq!(ok("PASS"), Command::Pass(String::new()));
        assert_eq!(ok("PASS "), Command::Pass(String::new()));
        assert_eq!(ok("ACCT x"), Command::Acct("x".into()));
        assert!(is_syntax(b"USER"));
        assert!(is_syntax(b"USER "));
        assert!(is_syntax(b"ACCT"));
        assert!(is_syntax(b"PASS \xc3\x28"));
    }

    #[test]
    fn missing_arguments() {
        for verb in [
            "USER", "CWD", "XCWD", "MKD", "RMD", "DELE", "RNFR", "RNTO", "TYPE", "MODE", "STRU",
            "ALLO", "REST", "RETR", "STOR", "APPE", "SIZE", "MDTM", "MFMT", "PORT", "EPRT", "AUTH",
            "PBSZ", "PROT", "OPTS",
        ] {
            match parse(verb.as_bytes()) {
                Err(ParseError::Syntax(m)) => assert!(m.contains("requires"), "{verb}: {m}"),
                other => panic!("{verb}: {other:?}"),
            }
            assert!(is_syntax(format!("{verb} ").as_bytes()), "{verb}");
        }
        assert!(is_syntax(b"TYPE   "));
    }

    #[test]
    fn optional_arguments() {
        assert_eq!(ok("STAT"), Command::Stat(None));
        assert_eq!(ok("STAT /dir"), Command::Stat(Some("/dir".into())));
        assert_eq!(ok("HELP"), Command::Help(None));
        assert_eq!(ok("HELP RETR"), Command::Help(Some("RETR".into())));
        assert_eq!(ok("MLSD"), Command::Mlsd(None));
        assert_eq!(ok("MLSD "), Command::Mlsd(None));
        assert_eq!(ok("MLSD d"), Command::Mlsd(Some("d".into())));
        assert_eq!(ok("MLST f"), Command::Mlst(Some("f".into())));
        assert_eq!(ok("STOU"), Command::Stou(None));
        assert_eq!(ok("STOU hint"), Command::Stou(Some("hint".into())));
    }

    #[test]
    fn telnet_prefixes_are_skipped() {
        assert_eq!(parse(b"\xff\xf4\xff\xf2ABOR"), Ok(Command::Abor));
        assert_eq!(parse(b"\xff\xf4\xf2ABOR"), Ok(Command::Abor));
        assert_eq!(parse(b"\xf2ABOR"), Ok(Command::Abor));
        assert_eq!(parse(b"\xff\xfd\x01NOOP"), Ok(Command::Noop));
        assert_eq!(parse(b"\xff\xf4\xff\xf2"), Err(ParseError::Empty));
        assert_eq!(parse(b"\xff"), Err(ParseError::Empty));
        assert_eq!(parse(b"  NOOP"), Ok(Command::Noop));
    }

    #[test]
    fn empty_nul_and_bad_utf8() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"   "), Err(ParseError::Empty));
        assert!(is_syntax(b"RETR a\0b"));
        assert!(is_syntax(b"\0"));
        assert!(is_syntax(b"NOOP\0"));
        assert!(is_syntax(b"RETR \xff\xfe"));
        assert!(is_syntax(b"CWD \xc3"));
    }

    #[test]
    fn unknown_and_not_implemented() {
        assert_eq!(err(b"FOO bar"), ParseError::Unknown("FOO".into()));
        assert_eq!(
            err(b"xyzzyxyzzyxyzzyxyzzy"),
            ParseError::Unknown("XYZZYXYZZYXYZZYX".into())
        );
        assert_eq!(err(b"RE\x01R x"), ParseError::Unknown("RE?R".into()));
        assert_eq!(
            err(b"\xc3\xa9t\xc3\xa9"),
            ParseError::Unknown("??T??".into())
        );
        assert_eq!(err(b"RETR\tx"), ParseError::Unknown("RETR?X".into()));
        assert_eq!(err(b"GET x"), ParseError::Unknown("GET".into()));
        assert_eq!(
            err(&vec![b'A'; 100_000]),
            ParseError::Unknown("A".repeat(16))
        );
        assert_eq!(
            parse(b"SITE CHMOD 755 my file"),
            Ok(Command::Site(SiteCommand::Chmod {
                mode: 0o755,
                path: "my file".into()
            }))
        );
        assert_eq!(parse(b"site help"), Ok(Command::Site(SiteCommand::Help)));
        assert_eq!(
            parse(b"SITE idle 5"),
            Ok(Command::Site(SiteCommand::Other("IDLE".into())))
        );
        assert_eq!(err(b"SITE CHMOD 999 x").code(), 501);
        assert_eq!(err(b"SITE CHMOD 17777 x").code(), 501);
        assert_eq!(err(b"SITE CHMOD 644").code(), 501);
        assert_eq!(err(b"smnt x"), ParseError::NotImplemented("SMNT".into()));
        assert_eq!(
            err(b"LPRT 4,4,1,2,3,4,2,0,21"),
            ParseError::NotImplemented("LPRT".into())
        );
        assert_eq!(err(b"LPSV"), ParseError::NotImplemented("LPSV".into()));
        assert_eq!(err(b"XMD5 f"), ParseError::NotImplemented("XMD5".into()));
        assert_eq!(err(b"R2D2"), ParseError::Unknown("R2D2".into()));
        assert_eq!(err(b"FOO").code(), 500);
        assert_eq!(err(b"SITE").code(), 501);
        assert_eq!(err(b"TYPE E").code(), 504);
        assert_eq!(err(b"REST x").code(), 501);
        assert_eq!(err(b"").code(), 500);
        assert_eq!(err(b"EPRT |3|x|1|").code(), 522);
    }

    #[test]
    fn type_mode_stru() {
        assert_eq!(ok("TYPE A"), Command::Type(TransferType::Ascii));
        assert_eq!(ok("type a"), Command::Type(TransferType::Ascii));
        assert_eq!(ok("TYPE A N"), Command::Type(TransferType::Ascii));
        assert_eq!(ok("TYPE a n"), Command::Type(TransferType::Ascii));
        assert_eq!(ok("TYPE I"), Command::Type(TransferType::Image));
        assert_eq!(ok("TYPE  i "), Command::Type(TransferType::Image));
        assert_eq!(ok("TYPE L 8"), Command::Type(TransferType::Image));
        for pni in [
            "TYPE E",
            "TYPE A T",
            "TYPE A C",
            "TYPE L 7",
            "TYPE L 16",
            "TYPE E N",
        ] {
            assert!(
                matches!(err(pni.as_bytes()), ParseError::ParameterNotImplemented(_)),
                "{pni}"
            );
        }
        for bad in [
            "TYPE X",
            "TYPE L",
            "TYPE I N",
            "TYPE A X",
            "TYPE AN",
            "TYPE L x",
            "TYPE A N N",
        ] {
            assert!(is_syntax(bad.as_bytes()), "{bad}");
        }
        assert_eq!(ok("MODE S"), Command::ModeStream);
        assert_eq!(ok("mode s"), Command::ModeStream);
        assert!(matches!(
            err(b"MODE B"),
            ParseError::ParameterNotImplemented(_)
        ));
        assert!(matches!(
            err(b"MODE C"),
            ParseError::ParameterNotImplemented(_)
        ));
        assert!(matches!(
            err(b"MODE Z"),
            ParseError::ParameterNotImplemented(_)
        ));
        assert!(is_syntax(b"MODE Q"));
        assert_eq!(ok("STRU F"), Command::StruFile);
        assert!(matches!(
            err(b"STRU R"),
            ParseError::ParameterNotImplemented(_)
        ));
        assert!(matches!(
            err(b"STRU p"),
            ParseError::ParameterNotImplemented(_)
        ));
        assert!(is_syntax(b"STRU X"));
    }

    #[test]
    fn rest_allo_pbsz_prot_auth() {
        assert_eq!(ok("REST 0"), Command::Rest(0));
        assert_eq!(ok("REST 18446744073709551615"), Command::Rest(u64::MAX));
        assert_eq!(ok("REST  100 "), Command::Rest(100));
        for bad in [
            "REST -1",
            "REST +1",
            "REST 1.5",
            "REST x",
            "REST 18446744073709551616",
            "REST 1 2",
        ] {
            assert!(is_syntax(bad.as_bytes()), "{bad}");
        }
        assert_eq!(ok("ALLO 100"), Command::Allo);
        assert_eq!(ok("ALLO 100 R 10"), Command::Allo);
        assert!(is_syntax(b"ALLO x"));
        assert_eq!(ok("PBSZ 0"), Command::Pbsz(0));
        assert!(is_syntax(b"PBSZ -0"));
        assert_eq!(ok("PROT P"), Command::Prot(ProtLevel::Private));
        assert_eq!(ok("prot c"), Command::Prot(ProtLevel::Clear));
        assert_eq!(ok("PROT S"), Command::Prot(ProtLevel::Safe));
        assert_eq!(ok("PROT E"), Command::Prot(ProtLevel::Confidential));
        assert!(is_syntax(b"PROT X"));
        assert!(is_syntax(b"PROT PP"));
        assert_eq!(ok("AUTH tls"), Command::Auth("TLS".into()));
        assert_eq!(ok("AUTH TLS-C"), Command::Auth("TLS-C".into()));
        assert_eq!(ok("AUTH ssl "), Command::Auth("SSL".into()));
    }

    #[test]
    fn opts() {
        assert_eq!(
            ok("OPTS UTF8 ON"),
            Command::Opts {
                command: "UTF8".into(),
                args: Some("ON".into())
            }
        );
        assert_eq!(
            ok("opts utf8 on"),
            Command::Opts {
                command: "UTF8".into(),
                args: Some("on".into())
            }
        );
        assert_eq!(
            ok("OPTS MLST type;size;"),
            Command::Opts {
                command: "MLST".into(),
                args: Some("type;size;".into())
            }
        );
        assert_eq!(
            ok("OPTS MLST"),
            Command::Opts {
                command: "MLST".into(),
                args: None
            }
        );
        assert_eq!(
            ok("OPTS MLST   "),
            Command::Opts {
                command: "MLST".into(),
                args: None
            }
        );
    }

    #[test]
    fn port_eprt_epsv() {
        assert_eq!(
            ok("PORT 127,0,0,1,4,2"),
            Command::Port(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1026))
        );
        assert_eq!(
            ok("PORT  127,0,0,1,4,2 "),
            Command::Port(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1026))
        );
        assert!(is_syntax(b"PORT 127,0,0,1,4"));
        assert!(is_syntax(b"PORT 256,0,0,1,4,2"));
        assert!(is_syntax(b"PORT 1,2,3,4,0,0"));
        assert_eq!(
            ok("EPRT |1|132.235.1.2|6275|"),
            Command::Eprt(SocketAddr::new(Ipv4Addr::new(132, 235, 1, 2).into(), 6275))
        );
        assert_eq!(
            ok("EPRT |2|::1|5282|"),
            Command::Eprt(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 5282))
        );
        assert_eq!(err(b"EPRT |3|::1|5282|"), ParseError::UnsupportedFamily(3));
        assert!(is_syntax(b"EPRT |1|::1|5282|"));
        assert!(is_syntax(b"EPRT |1|1.2.3.4|0|"));
        assert_eq!(ok("EPSV"), Command::Epsv(EpsvArg::Any));
        assert_eq!(ok("EPSV "), Command::Epsv(EpsvArg::Any));
        assert_eq!(ok("EPSV 1"), Command::Epsv(EpsvArg::V4));
        assert_eq!(ok("EPSV 2"), Command::Epsv(EpsvArg::V6));
        assert_eq!(ok("EPSV all"), Command::Epsv(EpsvArg::All));
        assert_eq!(ok("EPSV ALL"), Command::Epsv(EpsvArg::All));
        assert_eq!(ok("EPSV 3"), Command::Epsv(EpsvArg::Unsupported(3)));
        assert!(is_syntax(b"EPSV x"));
        assert!(is_syntax(b"EPSV -1"));
        assert!(is_syntax(b"EPSV 99999999999"));
    }

    #[test]
    fn list_args() {
        let la = |all, long, path: Option<&str>| ListArgs {
            all,
            long,
            path: path.map(String::from),
        };
        assert_eq!(ok("LIST"), Command::List(la(false, false, None)));
        assert_eq!(ok("LIST "), Command::List(la(false, false, None)));
        assert_eq!(ok("LIST -la"), Command::List(la(true, true, None)));
        assert_eq!(
            ok("LIST -al /pub"),
            Command::List(la(true, true, Some("/pub")))
        );
        assert_eq!(ok("LIST -a"), Command::List(la(true, false, None)));
        assert_eq!(
            ok("LIST -A dir"),
            Command::List(la(true, false, Some("dir")))
        );
        assert_eq!(
            ok("LIST -l -a  my dir"),
            Command::List(la(true, true, Some("my dir")))
        );
        assert_eq!(ok("LIST -F"), Command::List(la(false, false, None)));
        assert_eq!(
            ok("LIST dir name"),
            Command::List(la(false, false, Some("dir name")))
        );
        assert_eq!(ok("LIST -"), Command::List(la(false, false, Some("-"))));
        assert_eq!(ok("LIST --x"), Command::List(la(false, false, Some("--x"))));
        assert_eq!(ok("LIST -1"), Command::List(la(false, false, Some("-1"))));
        assert_eq!(
            ok("LIST -la -file-2"),
            Command::List(la(true, true, Some("-file-2")))
        );
        assert_eq!(ok("NLST -l"), Command::Nlst(la(false, true, None)));
        assert_eq!(
            ok("NLST *.txt"),
            Command::Nlst(la(false, false, Some("*.txt")))
        );
        assert!(is_syntax(b"LIST \xff"));
    }

    #[test]
    fn mfmt() {
        assert_eq!(
            ok("MFMT 20260101000000 a file"),
            Command::Mfmt {
                unix_secs: 1_767_225_600,
                path: "a file".into()
            }
        );
        assert_eq!(
            ok("MFMT 19700101000001.123 f"),
            Command::Mfmt {
                unix_secs: 1,
                path: "f".into()
            }
        );
        assert!(is_syntax(b"MFMT 20260101000000"));
        assert!(is_syntax(b"MFMT 20260101000000 "));
        assert!(is_syntax(b"MFMT 20261301000000 f"));
        assert!(is_syntax(b"MFMT yesterday f"));
    }

    #[test]
    fn verb_and_redacted() {
        assert_eq!(ok("XCWD a").verb(), "CWD");
        assert_eq!(ok("XPWD").verb(), "PWD");
        assert_eq!(ok("TYPE I").verb(), "TYPE");
        assert_eq!(ok("PASS hunter2").redacted(), "PASS ****");
        assert_eq!(ok("ACCT hunter2").redacted(), "ACCT ****");
        assert!(!format!("{:?}", ok("PASS hunter2")).contains("hunter2"));
        assert_eq!(ok("RETR a b").redacted(), "RETR a b");
        assert_eq!(ok("RETR a\rb").redacted(), "RETR a?b");
        assert_eq!(ok("TYPE L 8").redacted(), "TYPE I");
        assert_eq!(ok("LIST -la d").redacted(), "LIST -al d");
        assert_eq!(ok("LIST").redacted(), "LIST");
        assert_eq!(ok("EPSV ALL").redacted(), "EPSV ALL");
        assert_eq!(ok("PORT 1,2,3,4,5,6").redacted(), "PORT 1,2,3,4,5,6");
        assert_eq!(ok("EPRT |2|::1|21|").redacted(), "EPRT |2|::1|21|");
        assert_eq!(
            ok("MFMT 20260101000000 f").redacted(),
            "MFMT 20260101000000 f"
        );
        assert_eq!(ok("OPTS utf8 on").redacted(), "OPTS UTF8 on");
        assert_eq!(ok("prot p").redacted(), "PROT P");
        assert_eq!(ok("NOOP").redacted(), "NOOP");
    }

    /// Every command's redacted form parses back to the same command (PASS/ACCT aside).
    #[test]
    fn redacted_reparses() {
        for line in [
            "USER u",
            "QUIT",
            "REIN",
            "NOOP",
            "SYST",
            "STAT",
            "STAT d",
            "HELP",
            "FEAT",
            "OPTS UTF8 ON",
            "CWD d",
            "CDUP",
            "PWD",
            "MKD d",
            "RMD d",
            "DELE f",
            "RNFR a",
            "RNTO b",
            "TYPE A",
            "TYPE I",
            "MODE S",
            "STRU F",
            "REST 5",
            "RETR f",
            "STOR f",
            "STOU",
            "APPE f",
            "ABOR",
            "LIST -al d",
            "NLST",
            "MLSD",
            "MLST f",
            "SIZE f",
            "MDTM f",
            "MFMT 20260101000000 f",
            "PORT 1,2,3,4,5,6",
            "PASV",
            "EPRT |1|1.2.3.4|5|",
            "EPSV",
            "EPSV 1",
            "EPSV ALL",
            "AUTH TLS",
            "PBSZ 0",
            "PROT P",
            "CCC",
        ] {
            let cmd = ok(line);
            assert_eq!(ok(&cmd.redacted()), cmd, "{line}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_plausible_lines(
            verb in "(?i)(USER|PASS|TYPE|MODE|STRU|REST|PORT|EPRT|EPSV|LIST|NLST|MFMT|OPTS|PROT|PBSZ|ALLO|RETR|XCWD|SITE|FOO)",
            arg in "[ -~\u{80}-\u{10ffff}]{0,40}",
        ) {
            let line = format!("{verb} {arg}");
            if let Ok(cmd) = parse(line.as_bytes()) {
                prop_assert_eq!(cmd.verb().len() >= 3, true);
                let _ = cmd.redacted();
            }
        }

        #[test]
        fn paths_round_trip(path in "[^\0\r\n]{1,50}") {
            prop_assert_eq!(parse(format!("RETR {path}").as_bytes()), Ok(Command::Retr(path.clone())));
            prop_assert_eq!(parse(format!("dele {path}").as_bytes()), Ok(Command::Dele(path)));
        }
    }
}
