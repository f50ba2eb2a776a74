//! The CRI benchmark behind tests/bench/cri.sh (ignored in `cargo test`; the script runs it
//! in release): pod start to container exit through containerd's CRI plugin, as kubelet
//! drives it, with the `runc` handler and the `encc` handler on the same busybox image in the
//! same run, measured alternately. `encc` pulls and verifies the image inside the enclave on
//! every start; `encc-kept` keeps it sealed in the store (`seal_key_file`), so only its first
//! start pulls. Then BENCH_PODS (default 10) pods at once per handler.
//!
//! A start is timed from the RunPodSandbox call to the container's `finished_at` as
//! containerd records it, so the client's polling does not count; the pod is then stopped and
//! removed outside the timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::containerd::{Containerd, ContainerdOptions, CRI_NAMESPACE};
use common::cri::{stdout_lines, Container, Cri, Pod};
use common::{encc_ok, root_peers};

const HANDLERS: [&str; 3] = ["runc", "encc", "encc-kept"];
const EXIT_TIMEOUT: Duration = Duration::from_secs(300);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Bench {
    containerd: Containerd,
    dir: tempfile::TempDir,
    image: String,
}

impl Bench {
    fn start() -> Option<Bench> {
        let peers = root_peers()?;
        let dir = tempfile::Builder::new()
            .prefix("encc-cri-bench.")
            .tempdir()
            .unwrap();
        let seal = dir.path().join("seal.key");
        encc_ok(args!["key", "gen", "-o", &seal]);
        let boot = |name: &str, extra: String| -> PathBuf {
            let path = dir.path().join(format!("{name}.json"));
            std::fs::write(
                &path,
                format!(
                    r#"{{"store": "{}", "insecure_policy": true, "insecure_registries": ["{}"], "log_level": "error"{extra}}}"#,
                    dir.path().join("store").display(),
                    peers.registry
                ),
            )
            .unwrap();
            path
        };
        let containerd = Containerd::start(&ContainerdOptions {
            boot_config: Some(boot("boot", String::new())),
            more_encc: vec![(
                "encc-kept".into(),
                boot(
                    "boot-kept",
                    format!(r#", "seal_key_file": "{}""#, seal.display()),
                ),
            )],
            registry: Some(peers.registry.clone()),
            ..ContainerdOptions::default()
        })
        .unwrap();
        containerd
            .import(CRI_NAMESPACE, &peers.fixtures.join("pause.tar"))
            .unwrap();
        let image = format!("{}/test/busybox:latest", peers.registry);
        Some(Bench {
            containerd,
            dir,
            image,
        })
    }

    fn pod(&self, name: &str) -> Pod {
        Pod::new(
            name,
            &self.dir.path().join("logs").join(name),
            &self.containerd.cgroup_parent(),
        )
    }
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// One pod with one busybox container running the image's own command: seconds from RunPodSandbox to the
/// container's exit; the pod is removed afterwards.
fn one_pod(bench: &Bench, cri: &mut Cri, handler: &str, name: &str) -> f64 {
    let pod = bench.pod(name);
    // The image's own command (`sh -c 'echo hello from busybox'`): no override.
    let c = Container::new("main", &bench.image);
    let t0 = nanos(SystemTime::now());
    let pod_id = cri.run_pod(&pod, handler).unwrap();
    let id = cri.create(&pod_id, &pod, &c).unwrap().unwrap();
    if let Err(e) = cri.start(&id).unwrap() {
        panic!("{handler}: StartContainer failed: {e}");
    }
    let status = cri.wait_exited(&id, EXIT_TIMEOUT).unwrap();
    assert_eq!(status.exit_code, 0, "{handler}: {}", status.raw);
    let out = stdout_lines(&status.log_path).unwrap();
    assert_eq!(out, ["hello from busybox"], "{handler}: {}", status.raw);
    let finished: i64 = status.raw["status"]["finished_at"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no finished_at in {}", status.raw));
    cri.remove_container(&id).unwrap();
    cri.stop_pod(&pod_id).unwrap();
    cri.remove_pod(&pod_id).unwrap();
    (finished - t0) as f64 / 1e9
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn summary(xs: &[f64]) -> String {
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = xs.iter().copied().fold(0.0, f64::max);
    format!(
        "median {:.3} s  (min {min:.3}, max {max:.3}, n={})",
        median(xs.to_vec()),
        xs.len()
    )
}

/// `n` pods at once (one client each, connected beforehand): seconds from the first
/// RunPodSandbox to the last container's exit.
fn pods_at_once(bench: &Bench, handler: &str, n: usize, round: usize) -> f64 {
    let clients: Vec<Cri> = (0..n)
        .map(|_| Cri::connect(&bench.containerd.address()).unwrap())
        .collect();
    let barrier = std::sync::Barrier::new(n);
    let t0 = std::sync::OnceLock::new();
    let ends: Vec<(f64, f64)> = std::thread::scope(|s| {
        let workers: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut cri)| {
                let (barrier, t0) = (&barrier, &t0);
                s.spawn(move || {
                    barrier.wait();
                    let first = *t0.get_or_init(SystemTime::now);
                    let start = SystemTime::now();
                    let name = format!("{handler}-at-once-{round}-{i}");
                    let took = one_pod(bench, &mut cri, handler, &name);
                    let offset = start.duration_since(first).unwrap_or_default();
                    (offset.as_secs_f64(), took)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    ends.into_iter()
        .map(|(at, took)| at + took)
        .fold(0.0, f64::max)
}

#[test]
#[ignore = "a benchmark: tests/bench/cri.sh runs it"]
fn cri_pod_start_to_exit() {
    let Some(bench) = Bench::start() else { return };
    let runs = env_usize("RUNS", 10);
    let n = env_usize("BENCH_PODS", 10);
    let mut cri = Cri::connect(&bench.containerd.address()).unwrap();
    cri.pull(&bench.image, &bench.pod("pull")).unwrap();
    // One unmeasured start per handler: caches, the kept image's first pull.
    for handler in HANDLERS {
        one_pod(&bench, &mut cri, handler, &format!("{handler}-warmup"));
    }
    let mut one: Vec<Vec<f64>> = vec![Vec::new(); HANDLERS.len()];
    for run in 0..runs {
        for (h, handler) in HANDLERS.iter().enumerate() {
            one[h].push(one_pod(
                &bench,
                &mut cri,
                handler,
                &format!("{handler}-{run}"),
            ));
        }
    }
    let rounds = env_usize("BENCH_ROUNDS", 3);
    let mut many: Vec<Vec<f64>> = vec![Vec::new(); HANDLERS.len()];
    for round in 0..rounds {
        for (h, handler) in HANDLERS.iter().enumerate() {
            many[h].push(pods_at_once(&bench, handler, n, round));
        }
    }
    let runc = median(one[0].clone());
    println!("\nCRI: pod start (RunPodSandbox) to container exit, busybox, its own command, host network");
    println!("one pod, {runs} runs each, alternating:");
    for (h, handler) in HANDLERS.iter().enumerate() {
        let ratios: Vec<f64> = one[h].iter().zip(&one[0]).map(|(a, b)| a / b).collect();
        println!(
            "  {handler:<10} {}  vs runc {:.2}x (median of pair ratios {:.2}x)",
            summary(&one[h]),
            median(one[h].clone()) / runc,
            median(ratios)
        );
    }
    println!("{n} pods at once (first RunPodSandbox to last exit), {rounds} rounds each:");
    let runc_many = median(many[0].clone());
    for (h, handler) in HANDLERS.iter().enumerate() {
        println!(
            "  {handler:<10} {}  vs runc {:.2}x, vs one pod of its own {:.2}x",
            summary(&many[h]),
            median(many[h].clone()) / runc_many,
            median(many[h].clone()) / median(one[h].clone())
        );
    }
}
