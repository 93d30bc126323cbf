//! The deployment files agree with each other and with `docs/deployment.md`:
//! `docker-compose.yml` (parsed, no Docker engine needed), `Dockerfile`, `.env.example`,
//! `turn-server/turnserver.conf`. Where a file holds a command, the command is run here
//! natively: the Dockerfile's healthcheck against a real server, the coturn service's
//! secret-splitting entrypoint against a stand-in `turnserver`.

use std::collections::BTreeSet;
use std::path::Path;

use crate::external::{require_program, run_client};
use crate::helpers::spawn_app;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn compose() -> Yaml {
    parse_yaml(&read("docker-compose.yml"))
}

#[test]
fn every_file_the_compose_services_reference_exists() {
    let compose = compose();
    let services = compose.get("services").entries();
    assert_eq!(
        services
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        ["signalpost", "turn", "nginx"]
    );
    let mut checked = 0;
    for (name, service) in services {
        if let Some(context) = service.find("build") {
            let dir = repo().join(context.str());
            assert!(
                dir.join("Dockerfile").is_file(),
                "{name}: no Dockerfile in {dir:?}"
            );
            checked += 1;
        }
        if let Some(env_file) = service.find("env_file") {
            // .env itself is the operator's copy and never committed; its template is.
            let template = format!("{}.example", env_file.str());
            assert!(
                repo().join(&template).is_file(),
                "{name}: {template} missing"
            );
            checked += 1;
        }
        for volume in service.find("volumes").map(Yaml::items).unwrap_or_default() {
            let source = volume.str().split(':').next().unwrap_or_default();
            if source.starts_with("./") {
                let path = repo().join(source);
                // nginx/certs is made by nginx/gen-self-signed.sh (or holds real
                // certificates); the script that makes it must exist.
                if source == "./nginx/certs" {
                    assert!(repo().join("nginx/gen-self-signed.sh").is_file());
                } else {
                    assert!(path.exists(), "{name}: bind mount {source} does not exist");
                }
                checked += 1;
            }
        }
    }
    // build, env_file, 2 coturn mounts, 3 nginx mounts.
    assert_eq!(
        checked, 7,
        "the services reference fewer files than expected"
    );
}

/// The Redis command line of `docker-compose.cluster.yml` without the program name: the
/// cluster tests run their private `redis-server` with exactly these settings.
pub fn cluster_redis_args() -> Vec<String> {
    let compose = parse_yaml(&read("docker-compose.cluster.yml"));
    let command = compose.get("services").get("redis").get("command").strs();
    assert_eq!(command.first().map(String::as_str), Some("redis-server"));
    command[1..].to_vec()
}

/// The names of the options the server reads from the environment.
fn server_env_names() -> BTreeSet<String> {
    read("src/config/mod.rs")
        .split("env = \"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_owned()))
        .collect()
}

#[test]
fn the_cluster_file_runs_every_node_on_one_durable_redis_behind_nginx() {
    let cluster = parse_yaml(&read("docker-compose.cluster.yml"));
    let services = cluster.get("services");
    let names: Vec<_> = services.entries().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["redis", "node1", "node2", "turn", "nginx"]);

    // Redis: every write fsynced to the AOF before it is acknowledged, on a volume.
    let redis = cluster_redis_args();
    for pair in [["--appendonly", "yes"], ["--appendfsync", "always"]] {
        assert!(
            redis.windows(2).any(|w| w == pair),
            "redis runs without {pair:?}: {redis:?}"
        );
    }
    assert_eq!(
        services.get("redis").get("volumes").strs(),
        ["redis-data:/data"]
    );
    assert!(cluster.get("volumes").find("redis-data").is_some());
    assert!(
        services.get("redis").find("ports").is_none(),
        "Redis is not published"
    );

    // The nodes: one image, one Redis, distinct names, nginx trusted, nothing published.
    let nginx = services.get("nginx");
    let nginx_ip = nginx.get("networks").get("edge").get("ipv4_address").str();
    let known = server_env_names();
    let mut node_ids = BTreeSet::new();
    for name in ["node1", "node2"] {
        let node = services.get(name);
        assert_eq!(node.get("build").str(), ".");
        assert_eq!(node.get("env_file").str(), ".env");
        assert!(
            node.find("ports").is_none(),
            "{name} is reached through nginx only"
        );
        let env = node.get("environment");
        for (key, _) in env.entries() {
            assert!(
                known.contains(key),
                "{name} sets {key}, which the server does not read"
            );
        }
        assert_eq!(env.get("REDIS_URL").str(), "redis://redis:6379/0");
        assert_eq!(env.get("TRUSTED_PROXIES").str(), format!("{nginx_ip}/32"));
        assert_eq!(env.get("HOST").str(), "0.0.0.0");
        assert_eq!(env.get("PORT").str(), "8080");
        assert!(
            node_ids.insert(env.get("NODE_ID").str().to_owned()),
            "{name}: NODE_ID reused"
        );
        assert_eq!(
            node.get("depends_on").get("redis").get("condition").str(),
            "service_healthy"
        );
    }

    // nginx balances over exactly those nodes, with the one shipped site.
    let upstreams = read("nginx/upstream-cluster.conf");
    let servers: Vec<_> = upstreams
        .lines()
        .filter_map(|line| line.trim().strip_prefix("server "))
        .map(|rest| rest.split([' ', ';']).next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(servers, ["node1:8080", "node2:8080"]);
    assert!(
        !upstreams.lines().any(|l| {
            let l = l.trim_start();
            !l.starts_with('#')
                && (l.contains("ip_hash") || l.contains("sticky") || l.starts_with("hash"))
        }),
        "no sticky sessions"
    );
    let mounts = nginx.get("volumes").strs();
    for mount in [
        "./nginx/signalpost.conf:/etc/nginx/conf.d/default.conf:ro",
        "./nginx/upstream-cluster.conf:/etc/nginx/signalpost-upstream.conf:ro",
        "./nginx/certs:/etc/nginx/certs:ro",
    ] {
        assert!(mounts.contains(&mount.to_owned()), "nginx lacks {mount}");
    }
    assert!(read("nginx/signalpost.conf").contains("include /etc/nginx/signalpost-upstream.conf;"));
    assert_eq!(nginx.get("ports").strs(), ["80:80", "443:443"]);

    // coturn is the single-node file's service itself.
    let turn = services.get("turn").get("extends");
    assert_eq!(turn.get("file").str(), "docker-compose.yml");
    assert!(
        compose()
            .get("services")
            .find(turn.get("service").str())
            .is_some()
    );

    let edge = &cluster
        .get("networks")
        .get("edge")
        .get("ipam")
        .get("config")
        .items()[0];
    let subnet = edge.get("subnet").str();
    assert!(
        nginx_ip.starts_with(subnet.trim_end_matches("0/24")),
        "{nginx_ip} in {subnet}"
    );
    assert_ne!(subnet, "172.28.0.0/24", "not the single-node file's subnet");

    let docs = read("docs/deployment.md");
    for needle in [
        "docker-compose.cluster.yml",
        "appendfsync",
        "NODE_TTL_SECS",
        "REDIS_URL",
    ] {
        assert!(
            docs.contains(needle),
            "docs/deployment.md does not mention {needle}"
        );
    }
}

#[test]
fn ports_and_volumes_are_the_documented_ones() {
    let compose = compose();
    let services = compose.get("services");
    let docs = read("docs/deployment.md");
    let turn_conf = read("turn-server/turnserver.conf");

    let signalpost = services.get("signalpost");
    assert_eq!(
        signalpost.get("ports").strs(),
        ["127.0.0.1:${PORT:-8080}:8080"]
    );
    assert_eq!(signalpost.get("volumes").strs(), ["signalpost-data:/data"]);
    assert_eq!(
        signalpost.get("environment").get("SQLITE_DB_PATH").str(),
        "/data/chat.db"
    );
    assert_eq!(signalpost.get("environment").get("PORT").str(), "8080");
    assert_eq!(signalpost.get("env_file").str(), ".env");
    assert!(
        compose.get("volumes").find("signalpost-data").is_some(),
        "the named volume is declared"
    );

    // signalpost trusts X-Forwarded-For from nginx's fixed address, and from nothing else.
    let nginx_ip = services
        .get("nginx")
        .get("networks")
        .get("edge")
        .get("ipv4_address")
        .str()
        .to_owned();
    assert_eq!(
        signalpost.get("environment").get("TRUSTED_PROXIES").str(),
        format!("{nginx_ip}/32")
    );
    let edge = &compose
        .get("networks")
        .get("edge")
        .get("ipam")
        .get("config")
        .items()[0];
    let (subnet, dynamic) = (edge.get("subnet").str(), edge.get("ip_range").str());
    assert_eq!((subnet, dynamic), ("172.28.0.0/24", "172.28.0.128/25"));
    assert!(
        nginx_ip.starts_with("172.28.0.")
            && nginx_ip[9..]
                .parse::<u8>()
                .is_ok_and(|host| (2..128).contains(&host)),
        "nginx's {nginx_ip} must be in the subnet and outside the dynamic range"
    );
    assert_eq!(signalpost.get("networks").strs(), ["edge"]);

    let turn = services.get("turn");
    assert_eq!(turn.get("network_mode").str(), "host");
    assert!(
        turn.find("ports").is_none(),
        "host networking publishes nothing"
    );
    assert!(
        turn.get("volumes")
            .strs()
            .contains(&"./turn-server/turnserver.conf:/etc/coturn/turnserver.conf:ro".into())
    );

    let nginx = services.get("nginx");
    assert_eq!(nginx.get("ports").strs(), ["80:80", "443:443"]);
    assert!(
        nginx
            .get("volumes")
            .strs()
            .contains(&"./nginx/signalpost.conf:/etc/nginx/conf.d/default.conf:ro".into())
    );

    // The relay range in the docs is the one coturn uses.
    let conf_value = |key: &str| {
        turn_conf
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("turnserver.conf has no {key}"))
            .to_owned()
    };
    let relay_range = format!("{}-{}", conf_value("min-port"), conf_value("max-port"));
    assert_eq!(conf_value("listening-port"), "3478");
    assert_eq!(conf_value("tls-listening-port"), "5349");
    for port in ["80", "443", "3478", "5349", relay_range.as_str()] {
        assert!(
            docs.contains(port),
            "docs/deployment.md does not mention port {port}"
        );
    }
}

#[tokio::test]
async fn the_turn_service_passes_every_secret_to_coturn_and_none_is_committed() {
    if !require_program("sh") {
        return;
    }
    let compose = compose();
    let turn = compose.get("services").get("turn");
    assert_eq!(turn.get("entrypoint").strs(), ["/bin/sh", "-c"]);
    let command = turn.get("command").strs();
    assert_eq!(command.len(), 1, "one shell script");
    // Compose turns `$$` into `$` before the shell sees it.
    let script = command[0].replace("$$", "$");
    let dir = tempfile::tempdir().expect("create a temp dir");
    let fake = dir.path().join("turnserver");
    std::fs::write(&fake, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").expect("write a fake turnserver");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make it executable");
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let output = run_client(
        tokio::process::Command::new("sh")
            .args(["-c", &script])
            .env("PATH", path)
            // A rotation in progress, with the blanks an operator may type. The `*` must
            // not glob.
            .env("TURN_SECRET", "new-secret, old*secret"),
    )
    .await;

    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "-c\n/etc/coturn/turnserver.conf\n\
         --static-auth-secret=new-secret\n--static-auth-secret=old*secret\n"
    );
    // The secret comes from the environment only: none in the file, and no static users.
    let conf = read("turn-server/turnserver.conf");
    for line in conf.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        assert!(
            !line.starts_with("static-auth-secret"),
            "committed secret: {line}"
        );
        assert!(!line.starts_with("user="), "static user: {line}");
        assert!(
            !line.starts_with("lt-cred-mech"),
            "conflicts with use-auth-secret: {line}"
        );
    }
    assert!(conf.lines().any(|l| l.trim() == "use-auth-secret"));
    assert_eq!(
        turn.get("environment").get("TURN_SECRET").str(),
        "${TURN_SECRET:?set TURN_SECRET in .env}"
    );
}

#[test]
fn env_example_documents_every_server_option() {
    let example = read(".env.example");
    let lines: Vec<&str> = example.lines().collect();
    // `NAME=value`, or `#NAME=value` for an option left unset.
    let variable = |line: &str| -> Option<String> {
        let (name, _) = line.strip_prefix('#').unwrap_or(line).split_once('=')?;
        let valid = name.starts_with(|c: char| c.is_ascii_uppercase())
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        valid.then(|| name.to_owned())
    };
    let mut documented = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = variable(line) else {
            assert!(
                line.trim().is_empty() || line.starts_with('#'),
                ".env.example line {} is neither a comment nor NAME=value",
                i + 1
            );
            continue;
        };
        let above = if i > 0 { lines[i - 1] } else { "" };
        assert!(
            above.starts_with('#') && variable(above).is_none(),
            ".env.example: {name} has no comment above it"
        );
        assert!(documented.insert(name.clone()), "{name} listed twice");
    }
    // Every `env = "NAME"` the server's configuration reads.
    let read_by_server = server_env_names();
    assert!(
        read_by_server.len() >= 10,
        "found {read_by_server:?} in src/config.rs"
    );
    let missing: Vec<_> = read_by_server.difference(&documented).collect();
    assert!(missing.is_empty(), ".env.example lacks {missing:?}");
    // And nothing stale: everything listed is read by the server or its logger.
    let outside_config = ["RUST_LOG"];
    let unknown: Vec<_> = documented
        .iter()
        .filter(|name| !read_by_server.contains(*name) && !outside_config.contains(&name.as_str()))
        .collect();
    assert!(unknown.is_empty(), ".env.example lists unknown {unknown:?}");
}

#[test]
fn dockerfile_builds_in_stages_and_runs_unprivileged_with_data_on_a_volume() {
    let dockerfile = read("Dockerfile");
    let instructions = dockerfile_instructions(&dockerfile);
    let all = |keyword: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, args)| args.as_str())
            .collect()
    };
    let stages = all("FROM");
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[1].starts_with("debian:bookworm-slim"), "{stages:?}");
    assert!(all("COPY").iter().any(|c| c.starts_with("--from=build ")));
    let user = all("USER");
    assert_eq!(user.len(), 1);
    assert!(!["root", "0"].contains(&user[0]), "runs as {user:?}");
    assert_eq!(all("VOLUME"), ["/data"]);
    assert!(
        all("ENV")
            .iter()
            .any(|e| e.contains("SQLITE_DB_PATH=/data/chat.db"))
    );
    assert_eq!(all("HEALTHCHECK").len(), 1);
}

#[tokio::test]
async fn dockerfile_healthcheck_passes_on_a_running_server_and_fails_without_one() {
    if !require_program("bash") {
        return;
    }
    let command = healthcheck_command(&read("Dockerfile"));
    let app = spawn_app().await;
    let closed_port = crate::external::free_port();
    let run = |port: u16| {
        let mut process = tokio::process::Command::new(&command[0]);
        process.args(&command[1..]).env("PORT", port.to_string());
        process
    };

    let healthy = run_client(&mut run(app.addr.port())).await;
    let unhealthy = run_client(&mut run(closed_port)).await;

    assert!(healthy.status.success(), "{healthy:?}");
    assert!(!unhealthy.status.success(), "{unhealthy:?}");
}

/// The `HEALTHCHECK ... CMD [...]` exec form as an argument vector.
fn healthcheck_command(dockerfile: &str) -> Vec<String> {
    let instructions = dockerfile_instructions(dockerfile);
    let (_, args) = instructions
        .iter()
        .find(|(keyword, _)| keyword == "HEALTHCHECK")
        .expect("a HEALTHCHECK");
    let (_, json) = args.split_once("CMD ").expect("HEALTHCHECK ... CMD");
    let command: Vec<String> = serde_json::from_str(json.trim()).expect("CMD in exec (JSON) form");
    assert!(!command.is_empty());
    command
}

/// `(KEYWORD, arguments)` per instruction, with `\` continuations joined and comments
/// dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').unwrap_or((current.as_str(), ""));
                instructions.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    instructions
}

// ---- A YAML subset parser -----------------------------------------------------------------
//
// Enough for docker-compose.yml without adding a crate: block mappings and sequences,
// plain and quoted scalars, flow sequences of scalars, `|`/`>` block scalars. Anything else
// (anchors, tags, flow mappings, tabs, several documents) panics with the line, so an edit
// that leaves the subset fails here instead of being half-read.

/// A parsed YAML node.
#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Null,
    Str(String),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    fn find(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> &Yaml {
        self.find(key)
            .unwrap_or_else(|| panic!("no key {key:?} in {self:?}"))
    }

    fn entries(&self) -> &[(String, Yaml)] {
        match self {
            Yaml::Map(entries) => entries,
            other => panic!("expected a mapping, got {other:?}"),
        }
    }

    fn items(&self) -> Vec<Yaml> {
        match self {
            Yaml::Seq(items) => items.clone(),
            other => panic!("expected a sequence, got {other:?}"),
        }
    }

    fn str(&self) -> &str {
        match self {
            Yaml::Str(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }

    fn strs(&self) -> Vec<String> {
        self.items()
            .iter()
            .map(|item| item.str().to_owned())
            .collect()
    }
}

struct Line {
    number: usize,
    indent: usize,
    text: String,
}

fn parse_yaml(text: &str) -> Yaml {
    let mut lines: Vec<Line> = text
        .lines()
        .enumerate()
        .map(|(i, raw)| {
            assert!(!raw.starts_with('\t'), "line {}: tab indentation", i + 1);
            let text = raw.trim_start();
            Line {
                number: i + 1,
                indent: raw.len() - text.len(),
                text: text.trim_end().to_owned(),
            }
        })
        .collect();
    let mut at = next_structural(&lines, 0);
    if at == lines.len() {
        return Yaml::Null;
    }
    let indent = lines[at].indent;
    let node = parse_block(&mut lines, &mut at, indent);
    at = next_structural(&lines, at);
    assert!(
        at == lines.len(),
        "line {}: unexpected content",
        lines[at.min(lines.len() - 1)].number
    );
    node
}

fn is_structural(line: &Line) -> bool {
    !line.text.is_empty() && !line.text.starts_with('#')
}

fn next_structural(lines: &[Line], from: usize) -> usize {
    (from..lines.len())
        .find(|&i| is_structural(&lines[i]))
        .unwrap_or(lines.len())
}

fn parse_block(lines: &mut [Line], at: &mut usize, indent: usize) -> Yaml {
    if is_item(&lines[*at].text) {
        parse_seq(lines, at, indent)
    } else {
        parse_map(lines, at, indent)
    }
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

fn parse_seq(lines: &mut [Line], at: &mut usize, indent: usize) -> Yaml {
    let mut items = Vec::new();
    while *at < lines.len() && lines[*at].indent == indent && is_item(&lines[*at].text) {
        let rest = strip_comment(&lines[*at].text[1..]).trim().to_owned();
        if rest.is_empty() {
            *at = next_structural(lines, *at + 1);
            let child = lines.get(*at).map(|l| l.indent).unwrap_or(0);
            assert!(child > indent, "line {}: empty item", lines[*at - 1].number);
            items.push(parse_block(lines, at, child));
        } else if rest.starts_with('|') || rest.starts_with('>') {
            items.push(parse_block_scalar(lines, at, indent, &rest));
        } else if split_key(&rest).is_some() {
            // `- key: value` opens a mapping indented past the dash.
            let line = &mut lines[*at];
            line.indent = indent + 2;
            line.text = rest;
            items.push(parse_map(lines, at, indent + 2));
        } else {
            items.push(parse_scalar(&rest, lines[*at].number));
            *at = next_structural(lines, *at + 1);
        }
    }
    Yaml::Seq(items)
}

fn parse_map(lines: &mut [Line], at: &mut usize, indent: usize) -> Yaml {
    let mut entries: Vec<(String, Yaml)> = Vec::new();
    while *at < lines.len() && lines[*at].indent == indent && !is_item(&lines[*at].text) {
        let number = lines[*at].number;
        let text = strip_comment(&lines[*at].text).to_owned();
        let (key, value) =
            split_key(&text).unwrap_or_else(|| panic!("line {number}: expected `key: value`"));
        assert!(
            !entries.iter().any(|(k, _)| *k == key),
            "line {number}: duplicate {key}"
        );
        let value = value.trim();
        let node = if value.is_empty() {
            *at = next_structural(lines, *at + 1);
            match lines.get(*at) {
                Some(next) if next.indent > indent => {
                    let child = next.indent;
                    parse_block(lines, at, child)
                }
                // A sequence may sit at its key's indent.
                Some(next) if next.indent == indent && is_item(&next.text) => {
                    parse_seq(lines, at, indent)
                }
                _ => Yaml::Null,
            }
        } else if value.starts_with('|') || value.starts_with('>') {
            parse_block_scalar(lines, at, indent, value)
        } else {
            *at = next_structural(lines, *at + 1);
            parse_scalar(value, number)
        };
        entries.push((key, node));
    }
    Yaml::Map(entries)
}

/// `|`, `|-`, `>`, `>-`: the more-indented lines below, literal or folded.
fn parse_block_scalar(lines: &[Line], at: &mut usize, indent: usize, header: &str) -> Yaml {
    let number = lines[*at].number;
    let folded = header.starts_with('>');
    let strip = match &header[1..] {
        "" => false,
        "-" => true,
        other => panic!("line {number}: unsupported block scalar header {other:?}"),
    };
    let mut body: Vec<&str> = Vec::new();
    *at += 1;
    while *at < lines.len() && (lines[*at].text.is_empty() || lines[*at].indent > indent) {
        body.push(&lines[*at].text);
        *at += 1;
    }
    while body.last() == Some(&"") {
        body.pop();
    }
    *at = next_structural(lines, *at);
    let mut text = body.join(if folded { " " } else { "\n" });
    if !strip {
        text.push('\n');
    }
    Yaml::Str(text)
}

fn parse_scalar(text: &str, number: usize) -> Yaml {
    let text = strip_comment(text).trim();
    assert!(
        !text.starts_with(['&', '*', '!', '{']) || text == "{}",
        "line {number}: anchors, tags and flow mappings are outside the subset: {text}"
    );
    if text == "{}" {
        return Yaml::Map(Vec::new());
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return Yaml::Seq(
            split_outside_quotes(inner, ',')
                .into_iter()
                .filter(|item| !item.trim().is_empty())
                .map(|item| parse_scalar(item, number))
                .collect(),
        );
    }
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return Yaml::Str(inner.replace("\\\"", "\"").replace("\\\\", "\\"));
    }
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        return Yaml::Str(inner.replace("''", "'"));
    }
    match text {
        "" | "~" | "null" => Yaml::Null,
        _ => Yaml::Str(text.to_owned()),
    }
}

/// `key: value` or `key:` (a plain or quoted key).
fn split_key(text: &str) -> Option<(String, String)> {
    let parts = split_outside_quotes(text, ':');
    let mut key = String::new();
    for (i, part) in parts.iter().enumerate() {
        key.push_str(part);
        let rest = parts[i + 1..].join(":");
        if i + 1 < parts.len() && (rest.is_empty() || rest.starts_with(' ')) {
            let key = key.trim().trim_matches('"').to_owned();
            return (!key.is_empty() && !key.contains(' ')).then_some((key, rest));
        }
        key.push(':');
    }
    None
}

/// Drops a ` #` comment that is outside quotes.
fn strip_comment(text: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous == ' ' => return &text[..i],
            _ => {}
        }
        previous = c;
    }
    text
}

fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let (mut single, mut double) = (false, false);
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            c if c == separator && !single && !double => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[test]
fn the_yaml_subset_parser_reads_what_compose_files_use() {
    let yaml = parse_yaml(
        "# comment\n\
         a: 1 # trailing\n\
         b:\n\
         \x20 - \"x: y\"\n\
         \x20 - k: v\n\
         \x20   m: [\"p\", q]\n\
         c:\n\
         - z\n\
         d: >-\n\
         \x20 one\n\
         \x20 # kept\n\
         \x20 two\n\
         g:\n\
         \x20 - |\n\
         \x20   l1\n\
         \x20   l2\n\
         e: {}\n\
         f:\n",
    );
    let expected = Yaml::Map(vec![
        ("a".into(), Yaml::Str("1".into())),
        (
            "b".into(),
            Yaml::Seq(vec![
                Yaml::Str("x: y".into()),
                Yaml::Map(vec![
                    ("k".into(), Yaml::Str("v".into())),
                    (
                        "m".into(),
                        Yaml::Seq(vec![Yaml::Str("p".into()), Yaml::Str("q".into())]),
                    ),
                ]),
            ]),
        ),
        ("c".into(), Yaml::Seq(vec![Yaml::Str("z".into())])),
        ("d".into(), Yaml::Str("one # kept two".into())),
        ("g".into(), Yaml::Seq(vec![Yaml::Str("l1\nl2\n".into())])),
        ("e".into(), Yaml::Map(vec![])),
        ("f".into(), Yaml::Null),
    ]);
    assert_eq!(yaml, expected);
}

#[test]
#[should_panic(expected = "outside the subset")]
fn the_yaml_subset_parser_refuses_anchors() {
    parse_yaml("a: &x 1\nb: *x\n");
}
