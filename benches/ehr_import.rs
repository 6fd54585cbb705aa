//! Benchmark: import a deterministic generic CSV export (1,000,000 rows by default) and compare
//! with the `sqlite3` command line's `.import` of the same file into a bare table.
//!
//! Run: `cargo bench --bench ehr_import` (options after `--`: `--rows N`, `--dir DIR` to keep the
//! files). Prints `name value unit` lines.
//! The import runs in a child process (this binary re-executed) so that its peak resident memory
//! is measured alone, from `/proc/self/status` (VmHWM).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use refbridge::config::Config;
use refbridge::import::Importer;
use refbridge::ledger::Ledger;
use refbridge_model::Npi;

const CHILD_ENV: &str = "REFBRIDGE_BENCH_IMPORT_CHILD";

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child_import();
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let rows = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .map_or(1_000_000, |n| n.parse().expect("--rows takes a number"));

    // `--dir DIR` keeps the export and ledgers there (for profiling); default: a temporary directory.
    let kept = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let temporary = tempfile::tempdir().expect("scratch directory");
    let scratch_path = match &kept {
        Some(dir) => {
            std::fs::create_dir_all(dir).expect("--dir");
            for stale in ["ledger.db", "ledger.db-wal", "ledger.db-shm", "bare.db"] {
                let _ = std::fs::remove_file(dir.join(stale));
            }
            dir.clone()
        }
        None => temporary.path().to_path_buf(),
    };
    let scratch = scratch_path.as_path();
    let csv = scratch.join("export.csv");
    let started = Instant::now();
    let bytes = generate(&csv, rows).expect("write the export");
    eprintln!(
        "generated {rows} rows ({:.0} MiB) in {:.1?}",
        bytes as f64 / 1048576.0,
        started.elapsed()
    );

    let sqlite3 = sqlite3_import(scratch, &csv);
    let config = write_config(scratch);
    let (import, peak_kib) = run_child(&config, &csv);
    let (reimport, _) = run_child(&config, &csv);

    println!("ehr_import_rows {rows} rows");
    println!("ehr_import_file_size {:.1} MiB", bytes as f64 / 1048576.0);
    println!("ehr_import_seconds {:.3} s", import.as_secs_f64());
    println!(
        "ehr_import_rows_per_second {:.0} rows/s",
        rows as f64 / import.as_secs_f64()
    );
    println!("ehr_import_peak_rss {:.1} MiB", peak_kib as f64 / 1024.0);
    println!(
        "ehr_reimport_same_file_seconds {:.3} s",
        reimport.as_secs_f64()
    );
    match sqlite3 {
        Some(baseline) => {
            println!("sqlite3_import_seconds {:.3} s", baseline.as_secs_f64());
            println!(
                "ehr_import_vs_sqlite3_ratio {:.2} x",
                import.as_secs_f64() / baseline.as_secs_f64()
            );
        }
        None => {
            eprintln!("sqlite3 not found: install it (apt-get install sqlite3) for the baseline")
        }
    }
}

/// The child: import the file into the ledger of `config`, print the time and peak memory.
fn child_import() {
    let args: Vec<String> = std::env::args().collect();
    let (config, csv) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let loaded = Config::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let ehr = loaded
        .config
        .connectors
        .ehr
        .clone()
        .expect("[connectors.ehr]");
    let started = Instant::now();
    let mut ledger =
        Ledger::open(&loaded.config.ledger.path, Duration::from_secs(10)).expect("ledger");
    let reader = Importer::reader_for(&ehr, loaded.patient_key.expose());
    let mut importer = Importer::new(
        &mut ledger,
        reader,
        &[],
        loaded.config.ledger.import_batch_rows,
    );
    importer.import_files(&[csv]).expect("import");
    let elapsed = started.elapsed();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0);
    println!("{} {peak_kib}", elapsed.as_secs_f64());
}

fn run_child(config: &Path, csv: &Path) -> (Duration, u64) {
    let output = Command::new(std::env::current_exe().expect("own path"))
        .arg(config)
        .arg(csv)
        .env(CHILD_ENV, "1")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the import child");
    assert!(
        output.status.success(),
        "import child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut parts = text.split_whitespace();
    let seconds: f64 = parts.next().and_then(|s| s.parse().ok()).expect("seconds");
    let peak: u64 = parts.next().and_then(|s| s.parse().ok()).expect("peak");
    (Duration::from_secs_f64(seconds), peak)
}

fn sqlite3_import(scratch: &Path, csv: &Path) -> Option<Duration> {
    let database = scratch.join("bare.db");
    let started = Instant::now();
    let output = Command::new("sqlite3")
        .arg(&database)
        .arg(".mode csv")
        .arg(format!(".import {} bare", csv.display()))
        .output()
        .ok()?;
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(elapsed)
}

fn write_config(scratch: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let key = scratch.join("patient_key");
    std::fs::write(&key, "benchmark-patient-key-0123456789").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = scratch.join("refbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\npath = \"{}\"\n[privacy]\npatient_key_file = \"{}\"\n[connectors.ehr]\ninbox = \"{}\"\n",
            scratch.join("ledger.db").display(),
            key.display(),
            scratch.join("inbox").display()
        ),
    )
    .unwrap();
    config
}

/// A small deterministic generator (xorshift64*), so every run imports the same bytes.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Writes `rows` generic rows; returns the file size.
fn generate(path: &Path, rows: u64) -> std::io::Result<u64> {
    const KINDS: &[(&str, &str)] = &[
        ("Hospital", "hospital"),
        ("Medical Center ED", "hospital"),
        ("Family Practice", "physician"),
        ("Counseling Associates", "therapist"),
        ("Detox Center", "detox"),
        ("Recovery Program", "treatment_program"),
        ("High School", "school"),
        ("Drug Court", "court"),
        ("Community Services", "community"),
    ];
    const PLACES: &[&str] = &[
        "Mercy",
        "Lakeside",
        "Harbor",
        "St. Mary's",
        "Riverside",
        "Summit",
        "Cedar",
        "Valley",
        "Northgate",
        "Pinecrest",
        "Oakwood",
        "Bayview",
        "Granite",
        "Willow",
        "Maple",
        "Eastside",
    ];
    const PAYERS: &[&str] = &[
        "Aetna",
        "Cigna",
        "UnitedHealthcare",
        "BCBS",
        "Humana",
        "Medicaid",
        "Medicare",
        "Self-pay",
    ];
    const PLANS: &[&str] = &[
        "PPO", "HMO", "EPO", "POS", "Medicaid", "Medicare", "self-pay",
    ];
    const LEVELS: &[&str] = &["3.7", "3.5", "2.1", "2.5", "1", "OTP", "3.7-WM", "ASAM 3.1"];
    const REASONS: &[&str] = &[
        "out of network",
        "level of care",
        "capacity",
        "geography",
        "declined",
        "no contact",
    ];
    const REPS: &[&str] = &[
        "Ana Ruiz",
        "Ben Okafor",
        "Cara Lindqvist",
        "Dev Patel",
        "Eli Moreau",
    ];

    let mut random = Random(0x5EED_2026);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "{}", refbridge_ehr::layout::GENERIC_HEADER)?;
    let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    for i in 0..rows {
        let partner = random.below(2000);
        let (kind, source_type) = KINDS[(partner % KINDS.len() as u64) as usize];
        let place = PLACES[(partner / KINDS.len() as u64 % PLACES.len() as u64) as usize];
        let branch = partner / (KINDS.len() * PLACES.len()) as u64;
        let mut name = format!("{place} {kind} {branch}");
        if random.below(10) == 0 {
            name = name
                .replace("Hospital", "HOSP.")
                .replace("Center", "Ctr")
                .to_uppercase();
        }
        let npi = match random.below(100) {
            0 => "1234567890".to_string(),
            1..=59 => Npi::from_first_nine(100_000_000 + partner as u32).to_string(),
            _ => String::new(),
        };
        let date = start + chrono::Days::new(i * 540 / rows.max(1));
        let us_date = random.below(3) == 0;
        let inquiry_date = if us_date {
            date.format("%m/%d/%Y").to_string()
        } else {
            date.to_string()
        };
        let (disposition, reason, referred_out, admit) = match random.below(10) {
            0..=3 => (
                "Admitted",
                "",
                "",
                (date + chrono::Days::new(2)).to_string(),
            ),
            4..=6 => ("Not Admitted", random.pick(REASONS), "", String::new()),
            7 => (
                "Referred Out",
                random.pick(REASONS),
                random.pick(PLACES),
                String::new(),
            ),
            _ => ("Pending", "", "", String::new()),
        };
        let referred_out = if referred_out.is_empty() {
            String::new()
        } else {
            format!("{referred_out} Recovery Program 1")
        };
        let note = if random.below(20) == 0 {
            "\"called twice, left VM\nfollow up\""
        } else {
            ""
        };
        writeln!(
            out,
            "INQ-{i:08},{inquiry_date},\"{name}\",{npi},{source_type},Dr. Referrer {r},{rep},{payer},{plan},{level},{disposition},{reason},{referred_out},{admit},MRN{mrn:09},Patient {i},1980-0{m}-1{d},555-01{p:02},\"{n} Main St, Apt {a}\",{zip:05},{note}",
            r = partner % 7,
            rep = random.pick(REPS),
            payer = random.pick(PAYERS),
            plan = random.pick(PLANS),
            level = random.pick(LEVELS),
            mrn = random.below(rows / 2 + 1),
            m = random.below(9) + 1,
            d = random.below(9),
            p = random.below(100),
            n = random.below(9000) + 100,
            a = random.below(50),
            zip = 10000 + random.below(89999),
        )?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}
