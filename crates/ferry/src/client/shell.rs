//! `ferry shell`: an interactive session like the classic `ftp` command, over FTP or SFTP,
//! with line editing, history and remote path completion (rustyline); reads commands from
//! standard input when it is not a terminal.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use ferry_client::{EntryKind, Error, Mode, StoreMode};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};
use tokio::runtime::{Handle, Runtime};

use super::remote::{LocalTarget, Remote};
use super::url::join;
use super::{ClientArgs, Result, Ui, parse_url, print_listing};

const COMMANDS: &[(&str, &str)] = &[
    ("ls", "ls [-l] [DIR]: list a remote directory"),
    ("dir", "dir [DIR]: long listing"),
    ("cd", "cd DIR: change remote directory"),
    ("cdup", "cdup: go to the remote parent directory"),
    ("pwd", "pwd: print the remote directory"),
    ("get", "get REMOTE [LOCAL]: download a file"),
    ("put", "put LOCAL [REMOTE]: upload a file"),
    (
        "mget",
        "mget PATTERN...: download the matching files (* and ? wildcards)",
    ),
    ("mput", "mput PATTERN...: upload the matching local files"),
    ("lcd", "lcd [DIR]: change the local directory"),
    ("lpwd", "lpwd: print the local directory"),
    ("mkdir", "mkdir DIR: create a remote directory"),
    ("rmdir", "rmdir DIR: remove an empty remote directory"),
    ("rm", "rm FILE: delete a remote file (also: delete)"),
    ("rename", "rename FROM TO: rename a remote file"),
    ("size", "size FILE: the size of a remote file"),
    (
        "mode",
        "mode [auto|passive|epsv|active]: show or set the data connection mode (FTP)",
    ),
    (
        "passive",
        "passive: switch between passive (EPSV/PASV) and active mode (FTP)",
    ),
    ("quote", "quote CMD...: send a raw command (FTP)"),
    ("help", "help [COMMAND]: this list"),
    ("quit", "quit: end the session (also: exit, bye)"),
];

/// Remote directory listings cached for completion until the next command runs.
type Cache = HashMap<String, Vec<(String, bool)>>;

struct ShellHelper {
    client: Rc<RefCell<Remote>>,
    handle: Handle,
    cache: RefCell<Cache>,
    files: FilenameCompleter,
}

impl ShellHelper {
    fn remote_candidates(&self, word: &str) -> Vec<Pair> {
        let (dir, prefix) = match word.rfind('/') {
            Some(i) => (&word[..=i], &word[i + 1..]),
            None => ("", word),
        };
        let mut cache = self.cache.borrow_mut();
        if !cache.contains_key(dir) {
            let Ok(mut client) = self.client.try_borrow_mut() else {
                return Vec::new();
            };
            let arg = (!dir.is_empty()).then_some(dir);
            let listed = self
                .handle
                .block_on(client.list(arg))
                .map(|v| {
                    v.into_iter()
                        .map(|e| {
                            let is_dir = e.kind == EntryKind::Dir;
                            (e.name, is_dir)
                        })
                        .collect()
                })
                .unwrap_or_default();
            cache.insert(dir.to_string(), listed);
        }
        let mut out: Vec<Pair> = cache
            .get(dir)
            .map(|names| {
                names
                    .iter()
                    .filter(|(n, _)| n.starts_with(prefix))
                    .map(|(n, d)| {
                        let full = format!("{dir}{n}{}", if *d { "/" } else { "" });
                        Pair {
                            display: format!("{n}{}", if *d { "/" } else { "" }),
                            replacement: escape(&full),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.display.cmp(&b.display));
        out
    }
}

/// Backslash-escape spaces so a completed name stays one word.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace(' ', "\\ ")
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        // Start of the current word: after the last unescaped space.
        let mut start = 0;
        let mut escaped = false;
        for (i, c) in before.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == ' ' {
                start = i + 1;
            }
        }
        let word = unescape(&before[start..]);
        let first = before.split_whitespace().next().unwrap_or("");
        if start == 0 {
            let pairs = COMMANDS
                .iter()
                .filter(|(c, _)| c.starts_with(&word))
                .map(|(c, _)| Pair {
                    display: (*c).to_string(),
                    replacement: format!("{c} "),
                })
                .collect();
            return Ok((0, pairs));
        }
        match first {
            "put" | "mput" | "lcd" => self.files.complete(line, pos, ctx),
            _ => Ok((start, self.remote_candidates(&word))),
        }
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Split a command line into words: spaces separate, `\` escapes, `"..."` and `'...'` quote.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                has = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    has = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if has || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// `*` and `?` wildcard match.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Run the shell; its result is the last failed command's error, if any failed.
pub(crate) fn run(rt: &Runtime, url: &str, common: &ClientArgs) -> Result<()> {
    let url = parse_url(url)?;
    let conn = common.connector(&url)?;
    let mut client = rt.block_on(conn.open())?;
    if let Some(dir) = url.path_arg() {
        rt.block_on(client.cwd(dir))?;
    }
    let ui = common.ui();
    let client = Rc::new(RefCell::new(client));
    let mut session = Session {
        client: client.clone(),
        handle: rt.handle().clone(),
        ui,
        last_error: None,
    };
    if std::io::stdin().is_terminal() {
        interactive(&mut session, client)?;
    } else {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let line = line.map_err(Error::local("reading standard input"))?;
            if !session.execute(&line) {
                break;
            }
        }
    }
    if let Ok(c) = Rc::try_unwrap(session.client).map(RefCell::into_inner) {
        let _ = rt.block_on(c.quit());
    }
    match session.last_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn interactive(session: &mut Session, client: Rc<RefCell<Remote>>) -> Result<()> {
    let helper = ShellHelper {
        client,
        handle: session.handle.clone(),
        cache: RefCell::new(HashMap::new()),
        files: FilenameCompleter::new(),
    };
    let mut rl = rustyline::Editor::<ShellHelper, rustyline::history::DefaultHistory>::new()
        .map_err(|e| Error::local("starting the line editor")(std::io::Error::other(e)))?;
    rl.set_helper(Some(helper));
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ferry_history"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    println!("Connected. Type help for the commands, quit to leave.");
    loop {
        match rl.readline("ferry> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = rl.add_history_entry(line.as_str());
                }
                let go_on = session.execute(&line);
                if let Some(h) = rl.helper() {
                    h.cache.borrow_mut().clear();
                }
                if !go_on {
                    break;
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(_) => break,
        }
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    Ok(())
}

struct Session {
    client: Rc<RefCell<Remote>>,
    handle: Handle,
    ui: Ui,
    last_error: Option<Error>,
}

impl Session {
    /// Run one command line; `false` to end the session.
    fn execute(&mut self, line: &str) -> bool {
        let words = split_words(line);
        let Some((cmd, args)) = words.split_first() else {
            return true;
        };
        let cmd = cmd.to_ascii_lowercase();
        if matches!(cmd.as_str(), "quit" | "exit" | "bye") {
            return false;
        }
        let result = self.dispatch(&cmd, args);
        if let Err(e) = result {
            eprintln!("error: {}", super::printable(&e.to_string()));
            let fatal = e.is_network();
            self.last_error = Some(e);
            if fatal {
                eprintln!("the connection is lost; leaving");
                return false;
            }
        }
        let _ = std::io::stdout().flush();
        true
    }

    fn dispatch(&mut self, cmd: &str, args: &[String]) -> Result<()> {
        let handle = self.handle.clone();
        let mut client = self.client.borrow_mut();
        let c = &mut *client;
        let arg = |i: usize, what: &str| -> Result<&String> {
            args.get(i)
                .ok_or_else(|| Error::Usage(format!("{cmd}: missing {what}")))
        };
        match cmd {
            "help" | "?" => {
                match args.first() {
                    Some(name) => match COMMANDS.iter().find(|(c, _)| c == name) {
                        Some((_, text)) => println!("{text}"),
                        None => println!("no such command: {name}"),
                    },
                    None => {
                        for (_, text) in COMMANDS {
                            println!("  {text}");
                        }
                    }
                }
                Ok(())
            }
            "ls" | "dir" => {
                let long = cmd == "dir" || args.iter().any(|a| a == "-l");
                let path = args.iter().find(|a| !a.starts_with('-'));
                let entries = handle.block_on(c.list(path.map(String::as_str)))?;
                print_listing(&entries, long, false);
                Ok(())
            }
            "nlist" | "nls" => {
                let path = args.first().map(String::as_str);
                let names = match c.ftp() {
                    Some(ftp) => handle.block_on(ftp.nlst(path))?,
                    None => {
                        let mut names: Vec<String> = handle
                            .block_on(c.list(path))?
                            .into_iter()
                            .map(|e| e.name)
                            .collect();
                        names.sort();
                        names
                    }
                };
                for n in names {
                    println!("{}", super::printable(&n));
                }
                Ok(())
            }
            "cd" => handle.block_on(c.cwd(arg(0, "directory")?)),
            "cdup" => handle.block_on(c.cdup()),
            "pwd" => {
                println!("{}", super::printable(&handle.block_on(c.pwd())?));
                Ok(())
            }
            "mkdir" => handle.block_on(c.mkdir(arg(0, "directory")?)),
            "rmdir" => handle.block_on(c.rmdir(arg(0, "directory")?)),
            "rm" | "delete" => handle.block_on(c.delete(arg(0, "file")?)),
            "rename" => handle.block_on(c.rename(arg(0, "name")?, arg(1, "new name")?)),
            "size" => {
                println!("{}", handle.block_on(c.size(arg(0, "file")?))?);
                Ok(())
            }
            "quote" | "literal" => {
                if args.is_empty() {
                    return Err(Error::Usage("quote: missing command".into()));
                }
                let c = ftp_only(c, cmd)?;
                let reply = handle.block_on(c.quote(&args.join(" ")))?;
                for line in super::printable_reply(&reply) {
                    println!("{line}");
                }
                Ok(())
            }
            "mode" => {
                let c = ftp_only(c, cmd)?;
                if let Some(m) = args.first() {
                    let mode: Mode = m.parse().map_err(Error::Usage)?;
                    c.set_mode(mode);
                }
                println!("mode: {}", c.options().mode);
                Ok(())
            }
            "passive" => {
                let c = ftp_only(c, cmd)?;
                let mode = if c.options().mode == Mode::Active {
                    Mode::Auto
                } else {
                    Mode::Active
                };
                c.set_mode(mode);
                println!("mode: {mode}");
                Ok(())
            }
            "lcd" => {
                let dir = match args.first() {
                    Some(d) => PathBuf::from(d),
                    None => std::env::var_os("HOME")
                        .map(PathBuf::from)
                        .unwrap_or_default(),
                };
                std::env::set_current_dir(&dir)
                    .map_err(Error::local(format!("lcd {}", dir.display())))?;
                println!("local directory: {}", cwd_display());
                Ok(())
            }
            "lpwd" => {
                println!("{}", cwd_display());
                Ok(())
            }
            "get" | "recv" => {
                let remote = arg(0, "remote file")?;
                let local = match args.get(1) {
                    Some(l) => PathBuf::from(l),
                    None => PathBuf::from(remote.rsplit('/').next().unwrap_or(remote)),
                };
                handle.block_on(get_file(c, remote, &local, self.ui))
            }
            "put" | "send" => {
                let local = PathBuf::from(arg(0, "local file")?);
                let remote = match args.get(1) {
                    Some(r) => r.clone(),
                    None => local
                        .file_name()
                        .and_then(|n| n.to_str())
                        .map(str::to_string)
                        .ok_or_else(|| Error::Usage("put: no usable file name".into()))?,
                };
                handle.block_on(put_file(c, &local, &remote, self.ui))
            }
            "mget" => {
                if args.is_empty() {
                    return Err(Error::Usage("mget: missing pattern".into()));
                }
                let mut last = Ok(());
                for pattern in args {
                    let (dir, pat) = match pattern.rsplit_once('/') {
                        Some((d, p)) => (d.to_string(), p.to_string()),
                        None => (String::new(), pattern.clone()),
                    };
                    let entries =
                        handle.block_on(c.list((!dir.is_empty()).then_some(dir.as_str())))?;
                    let matched: Vec<_> = entries
                        .into_iter()
                        .filter(|e| e.kind == EntryKind::File && glob_match(&pat, &e.name))
                        .collect();
                    if matched.is_empty() {
                        eprintln!("mget: no match for {pattern}");
                    }
                    for e in matched {
                        if e.name.contains(['/', '\\']) {
                            continue;
                        }
                        let remote = join(&dir, &e.name);
                        if let Err(err) =
                            handle.block_on(get_file(c, &remote, Path::new(&e.name), self.ui))
                        {
                            eprintln!("error: {}", super::printable(&err.to_string()));
                            last = Err(err);
                        }
                    }
                }
                last
            }
            "mput" => {
                if args.is_empty() {
                    return Err(Error::Usage("mput: missing pattern".into()));
                }
                let mut last = Ok(());
                for pattern in args {
                    let (dir, pat) = match pattern.rsplit_once('/') {
                        Some((d, p)) => (PathBuf::from(d), p.to_string()),
                        None => (PathBuf::from("."), pattern.clone()),
                    };
                    let mut names: Vec<String> = std::fs::read_dir(&dir)
                        .map_err(Error::local(format!("reading {}", dir.display())))?
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                        .filter_map(|e| e.file_name().to_str().map(str::to_string))
                        .filter(|n| glob_match(&pat, n))
                        .collect();
                    names.sort();
                    if names.is_empty() {
                        eprintln!("mput: no match for {pattern}");
                    }
                    for n in names {
                        if let Err(err) = handle.block_on(put_file(c, &dir.join(&n), &n, self.ui)) {
                            eprintln!("error: {}", super::printable(&err.to_string()));
                            last = Err(err);
                        }
                    }
                }
                last
            }
            other => Err(Error::Usage(format!(
                "unknown command '{other}' (try help)"
            ))),
        }
    }
}

/// The FTP session, for a command only FTP has.
fn ftp_only<'a>(c: &'a mut Remote, cmd: &str) -> Result<&'a mut ferry_client::Client> {
    c.ftp()
        .ok_or_else(|| Error::Usage(format!("{cmd} is for FTP; this session is SFTP")))
}

fn cwd_display() -> String {
    std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default()
}

fn report(ui: Ui, verb: &str, name: &str, bytes: u64, started: Instant) {
    if ui.quiet {
        return;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    println!(
        "{verb} {}: {bytes} bytes in {secs:.2} s ({:.1} KiB/s)",
        super::printable(name),
        bytes as f64 / 1024.0 / secs
    );
}

async fn get_file(c: &mut Remote, remote: &str, local: &Path, ui: Ui) -> Result<()> {
    let started = Instant::now();
    let size = c.size(remote).await.ok();
    let bar = ui.bar(size, remote);
    let got = c
        .download(remote, 0, LocalTarget::Create(local), bar.as_ref())
        .await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let n = got?;
    if let Some(s) = size
        && s != n
    {
        return Err(Error::Partial(format!(
            "{remote}: got {n} bytes, the server said {s}"
        )));
    }
    report(ui, "get", remote, n, started);
    Ok(())
}

async fn put_file(c: &mut Remote, local: &Path, remote: &str, ui: Ui) -> Result<()> {
    let started = Instant::now();
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(Error::local(format!("reading {}", local.display())))?;
    let len = file.metadata().await.ok().map(|m| m.len());
    let bar = ui.bar(len, remote);
    let sent = c
        .upload(&mut file, local, remote, StoreMode::Replace, bar.as_ref())
        .await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let n = sent?;
    if let Ok(s) = c.size(remote).await
        && s != n
    {
        return Err(Error::Partial(format!(
            "{remote}: the server has {s} bytes, sent {n}"
        )));
    }
    report(ui, "put", remote, n, started);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(
            split_words(r#"get "a b" c\ d 'e f'"#),
            ["get", "a b", "c d", "e f"]
        );
        assert_eq!(split_words("  ls  "), ["ls"]);
        assert_eq!(split_words(r#"put "" x"#), ["put", "", "x"]);
        assert!(split_words("").is_empty());
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("*.txt", "a.txd"));
        assert!(!glob_match("a?c", "ac"));
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a b"), "a\\ b");
        assert_eq!(unescape("a\\ b"), "a b");
    }
}
