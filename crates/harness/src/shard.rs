//! Shards: the evaluation split into units of work that any scheduler can run in separate
//! processes (Slurm array jobs, Kubernetes Indexed Jobs, GNU parallel), merged into what
//! one process writes (docs/SCALE.md).
//!
//! A sharded stage is a list of **units**, each a batch exactly as the single-process run
//! forms it (the models compute a row to the same bits in any batch, but a unit being
//! the very batch of the single run means nothing else a batch shares can change a
//! number). Unit `u` of stage `s` belongs to shard
//! [`owner`]`(s, u, N)`; shard K computes its units and writes them, one JSON line each,
//! to `stages/<s>.units.jsonl` under its own directory. The single-process run writes the
//! same file (all units, so a killed run resumes inside a stage) and assembles the stage
//! from the records **as read back from their JSON lines**; a merge assembles from the
//! shards' lines. The assembly sees the same bytes either way, so merged results are the
//! single run's, number for number. Every random draw is seeded by the run's seed and
//! the example's identity, never by its position in a shard.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::error::{HarnessError, Result};
use crate::inputs::{InputFingerprint, ProgramIdentity};

/// The file a finished shard leaves in its directory.
pub const SHARD_FILE: &str = "shard.json";

/// Shard `index` of `count` (written `K/N`, K from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shard {
    /// K, from 0.
    pub index: usize,
    /// N.
    pub count: usize,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// Parses `K/N` with `0 <= K < N`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("expected K/N with 0 <= K < N (for example 0/4), got `{s}`");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!("the shard count in `{s}` must be at least 1"));
        }
        if index >= count {
            return Err(format!(
                "the shard index in `{s}` must be below the count {count} (shards are numbered from 0)"
            ));
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// Whether unit `unit` of `stage` is this shard's.
    pub fn owns(&self, stage: &str, unit: usize) -> bool {
        owner(stage, unit, self.count) == self.index
    }
}

/// The shard (of `count`) that computes unit `unit` of `stage`: round robin over the
/// units, starting at a shard derived from the stage's name (FNV-1a), so that stages with
/// fewer units than shards do not all land on shard 0.
pub fn owner(stage: &str, unit: usize, count: usize) -> usize {
    let count = count.max(1);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stage.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ((h % count as u64) as usize + unit % count) % count
}

/// How a run obtains its sharded stages' units.
#[derive(Debug, Clone)]
pub(crate) enum Work {
    /// Computes every unit here (the single-process run).
    All,
    /// Computes this shard's units only; nothing is assembled.
    Shard(Shard),
    /// Reads every unit from the shards' directories (ordered by shard index), written
    /// by `program` (the build that ran the shards, which need not be the merging one).
    Merge {
        dirs: Vec<PathBuf>,
        program: ProgramIdentity,
    },
}

/// What a units file starts with: what made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UnitsHeader {
    stage: String,
    units: usize,
    shard: Option<Shard>,
    config: ExperimentConfig,
    inputs: InputFingerprint,
    /// The build that computed the units: a units file of another build is started
    /// afresh (and a file from before the build was recorded does not parse).
    program: ProgramIdentity,
}

#[derive(Serialize, Deserialize)]
struct UnitLine<R> {
    unit: usize,
    record: R,
}

/// Where and for what a run keeps its units.
pub(crate) struct Units<'a> {
    pub out: &'a Path,
    pub config: &'a ExperimentConfig,
    pub inputs: &'a InputFingerprint,
    pub work: &'a Work,
}

/// The units file of `stage` under `dir`.
pub(crate) fn units_path(dir: &Path, stage: &str) -> PathBuf {
    dir.join("stages").join(format!("{stage}.units.jsonl"))
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> HarnessError + '_ {
    move |source| HarnessError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn json_line<T: Serialize>(v: &T) -> Result<String> {
    let mut s = serde_json::to_string(v).map_err(|e| HarnessError::Other(e.to_string()))?;
    s.push('\n');
    Ok(s)
}

/// The header and the lines of a units file whose header `accept`s: each unit's record
/// as its JSON text, in file order; a torn last line (a killed run) ends the list.
fn read_lines(
    path: &Path,
    accept: impl Fn(&UnitsHeader) -> bool,
) -> Option<(UnitsHeader, Vec<(usize, String)>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let found: UnitsHeader = serde_json::from_str(lines.next()?).ok()?;
    if !accept(&found) {
        return None;
    }
    let mut done = Vec::new();
    for line in lines {
        let Ok(v) = serde_json::from_str::<UnitLine<serde_json::Value>>(line) else {
            break;
        };
        done.push((v.unit, serde_json::to_string(&v.record).ok()?));
    }
    Some((found, done))
}

fn parse<R: DeserializeOwned>(text: &str, path: &Path) -> Result<R> {
    serde_json::from_str(text).map_err(|e| {
        HarnessError::Other(format!(
            "{}: a unit's record does not parse: {e}",
            path.display()
        ))
    })
}

impl Units<'_> {
    /// The header of this run's units file of `stage` with `units` units, as `shard`
    /// (in a merge: as the shards' build wrote it, otherwise as this build writes it).
    fn header(&self, stage: &str, units: usize, shard: Option<Shard>) -> UnitsHeader {
        let program = match self.work {
            Work::Merge { program, .. } => program,
            _ => ProgramIdentity::running(),
        };
        UnitsHeader {
            stage: stage.to_string(),
            units,
            shard,
            config: self.config.clone(),
            inputs: self.inputs.clone(),
            program: program.clone(),
        }
    }

    /// The shard this run computes, if it is one.
    fn own_shard(&self) -> Option<Shard> {
        match self.work {
            Work::Shard(s) => Some(*s),
            _ => None,
        }
    }

    /// The `count` units of `stage`: computed here by `compute` (those this run owns and
    /// has not finished before; every unit in the single-process run), appended to the
    /// stage's units file as they finish, or read from the shards' files in a merge.
    /// `None` in a shard run (it assembles nothing); otherwise every record in unit
    /// order, as parsed back from its JSON line.
    pub fn run<R: Serialize + DeserializeOwned>(
        &self,
        stage: &str,
        count: usize,
        compute: impl FnMut(usize) -> Result<R>,
    ) -> Result<Option<Vec<R>>> {
        self.run_owned_as(stage, stage, count, compute)
    }

    /// [`Units::run`] with unit `u` owned by the shard that owns unit `u` of `owner_stage`
    /// (a stage whose units need that stage's units of the same index).
    pub fn run_owned_as<R: Serialize + DeserializeOwned>(
        &self,
        stage: &str,
        owner_stage: &str,
        count: usize,
        mut compute: impl FnMut(usize) -> Result<R>,
    ) -> Result<Option<Vec<R>>> {
        if let Work::Merge { dirs, .. } = self.work {
            return self.merged(stage, owner_stage, count, dirs).map(Some);
        }
        let shard = self.own_shard();
        let header = self.header(stage, count, shard);
        let path = units_path(self.out, stage);
        let mine = |u: usize| shard.is_none_or(|s| s.owns(owner_stage, u));
        let mut done: BTreeMap<usize, String> = BTreeMap::new();
        let kept = read_lines(&path, |h| h == &header).map(|(_, lines)| lines);
        for (u, text) in kept.unwrap_or_default() {
            if u < count && mine(u) {
                done.insert(u, text);
            }
        }
        // Rewrite what was kept (dropping a torn line), then append.
        let mut text = json_line(&header)?;
        for (u, record) in &done {
            text.push_str(&format!("{{\"unit\":{u},\"record\":{record}}}\n"));
        }
        crate::artifact::write_atomic(&path, text.as_bytes())?;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let todo: Vec<usize> = (0..count)
            .filter(|&u| mine(u) && !done.contains_key(&u))
            .collect();
        for u in todo {
            let record = compute(u)?;
            let record = serde_json::to_string(&record)
                .map_err(|e| HarnessError::Other(format!("{stage} unit {u}: {e}")))?;
            file.write_all(format!("{{\"unit\":{u},\"record\":{record}}}\n").as_bytes())
                .map_err(io_error(&path))?;
            file.sync_data().map_err(io_error(&path))?;
            done.insert(u, record);
        }
        if shard.is_some() {
            return Ok(None);
        }
        done.values()
            .map(|t| parse(t, &path))
            .collect::<Result<_>>()
            .map(Some)
    }

    /// The units of `stage` this run has written under its own directory (a shard: its
    /// own), by unit, as parsed back from their lines, and the stage's unit count; none
    /// when there are none.
    pub fn written<R: DeserializeOwned>(&self, stage: &str) -> Result<(usize, BTreeMap<usize, R>)> {
        let path = units_path(self.out, stage);
        // Any unit count: the caller learns it from the file.
        let mine = |h: &UnitsHeader| h == &self.header(stage, h.units, self.own_shard());
        let Some((header, lines)) = read_lines(&path, mine) else {
            return Ok((0, BTreeMap::new()));
        };
        let mut out = BTreeMap::new();
        for (u, text) in lines {
            out.insert(u, parse(&text, &path)?);
        }
        Ok((header.units, out))
    }

    /// Every unit of `stage` from the shards' directories (`dirs[k]` is shard k), each
    /// from the shard that owns it.
    fn merged<R: DeserializeOwned>(
        &self,
        stage: &str,
        owner_stage: &str,
        count: usize,
        dirs: &[PathBuf],
    ) -> Result<Vec<R>> {
        let n = dirs.len();
        let mut records: Vec<Option<R>> = (0..count).map(|_| None).collect();
        for (k, dir) in dirs.iter().enumerate() {
            let header = self.header(stage, count, Some(Shard { index: k, count: n }));
            let path = units_path(dir, stage);
            let (_, lines) = read_lines(&path, |h| h == &header).ok_or_else(|| {
                HarnessError::Other(format!(
                    "{}: not the units of stage {stage} ({count} units) of shard {k}/{n} \
                     under this configuration, these inputs and the shards' build",
                    path.display()
                ))
            })?;
            for (u, text) in lines {
                if u < count && owner(owner_stage, u, n) == k {
                    records[u] = Some(parse(&text, &path)?);
                }
            }
        }
        let missing: Vec<usize> = (0..count).filter(|&u| records[u].is_none()).collect();
        if let Some(&u) = missing.first() {
            let k = owner(owner_stage, u, n);
            return Err(HarnessError::Other(format!(
                "stage {stage}: shard {k}/{n} ({}) lacks {} of its units (unit {u} first): \
                 run it to the end",
                dirs[k].display(),
                missing
                    .iter()
                    .filter(|&&m| owner(owner_stage, m, n) == k)
                    .count()
            )));
        }
        Ok(records.into_iter().flatten().collect())
    }
}

/// What a finished shard writes last ([`SHARD_FILE`]): what it computed, and from what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardManifest {
    /// This shard.
    pub shard: Shard,
    /// The configuration.
    pub config: ExperimentConfig,
    /// The fingerprint of the weights and the test set.
    pub inputs: InputFingerprint,
    /// The build of the program that computed it (shards of different builds are not
    /// merged: their results could differ in the last bits, or more).
    pub program: ProgramIdentity,
    /// The stages whose units it computed, in order.
    pub stages: Vec<String>,
    /// Seconds the shard's run took.
    pub seconds: f64,
}

/// The first top-level key where two configurations differ, for an error message.
fn first_difference(a: &ExperimentConfig, b: &ExperimentConfig) -> String {
    let (a, b) = (serde_json::to_value(a), serde_json::to_value(b));
    if let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) {
        for (key, va) in &a {
            if b.get(key) != Some(va) {
                let vb = b
                    .get(key)
                    .map_or("missing".to_string(), ToString::to_string);
                return format!("`{key}` is {va} there and {vb} here");
            }
        }
    }
    "they differ".to_string()
}

/// Reads the manifests of the shard directories `dirs` (in any order) and checks that
/// they are shards 0..N of one run: the same configuration, inputs and N, each index
/// exactly once. Returns the directories ordered by shard index, and the manifest of
/// shard 0. Every refusal names the directories concerned.
pub fn check_shards(dirs: &[PathBuf]) -> Result<(Vec<PathBuf>, ShardManifest)> {
    if dirs.is_empty() {
        return Err(HarnessError::Other("no shard directories to merge".into()));
    }
    let mut manifests = Vec::new();
    for dir in dirs {
        let path = dir.join(SHARD_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            HarnessError::Other(format!(
                "{}: {e}: not a finished shard (a shard writes it when its last stage is done)",
                path.display()
            ))
        })?;
        let m: ShardManifest = serde_json::from_str(&text)
            .map_err(|e| HarnessError::Other(format!("{}: {e}", path.display())))?;
        manifests.push((dir.clone(), m));
    }
    let (first_dir, first) = manifests[0].clone();
    for (dir, m) in &manifests[1..] {
        if m.config != first.config {
            return Err(HarnessError::Other(format!(
                "{} and {} are shards of different configurations: {}",
                dir.display(),
                first_dir.display(),
                first_difference(&m.config, &first.config)
            )));
        }
        if m.inputs != first.inputs {
            return Err(HarnessError::Other(format!(
                "{} and {} are shards of different inputs (weights and test set): \
                 fingerprints {} and {}",
                dir.display(),
                first_dir.display(),
                m.inputs.short(),
                first.inputs.short()
            )));
        }
        if m.program != first.program {
            return Err(HarnessError::Other(format!(
                "{} and {} are shards computed by different builds of the program \
                 (executables {} and {}): run every shard with the same build",
                dir.display(),
                first_dir.display(),
                m.program.short(),
                first.program.short()
            )));
        }
        if m.shard.count != first.shard.count {
            return Err(HarnessError::Other(format!(
                "{} is shard {} but {} is shard {}: different shard counts",
                dir.display(),
                m.shard,
                first_dir.display(),
                first.shard
            )));
        }
    }
    let n = first.shard.count;
    let mut by_index: Vec<Option<PathBuf>> = vec![None; n];
    for (dir, m) in &manifests {
        if let Some(other) = &by_index[m.shard.index] {
            return Err(HarnessError::Other(format!(
                "shard {} appears twice: {} and {}",
                m.shard,
                other.display(),
                dir.display()
            )));
        }
        by_index[m.shard.index] = Some(dir.clone());
    }
    let missing: Vec<String> = (0..n)
        .filter(|&k| by_index[k].is_none())
        .map(|k| format!("{k}/{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(HarnessError::Other(format!(
            "missing shard{} {} (got {} of {n} directories)",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            manifests.len()
        )));
    }
    let shard0 = manifests
        .iter()
        .find(|(_, m)| m.shard.index == 0)
        .map(|(_, m)| m.clone())
        .unwrap_or(first);
    Ok((by_index.into_iter().flatten().collect(), shard0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnist_data::Dataset;

    fn inputs(byte: u8) -> InputFingerprint {
        let test = Dataset::new(vec![byte; 4], vec![0], 2, 2).unwrap();
        InputFingerprint::new([b"g", b"m", b"o", b"s", b"r"], &test)
    }

    #[test]
    fn shards_parse_and_refuse_nonsense() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        assert_eq!("0/1".parse::<Shard>().unwrap().to_string(), "0/1");
        for bad in ["4/4", "1", "a/2", "1/0", "-1/2", "1/2/3", ""] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
    }

    #[test]
    fn every_unit_has_exactly_one_owner_and_shards_share_the_work() {
        for n in 1..6 {
            for stage in ["type1_paper", "type2_cw-l2", "x"] {
                let mut per = vec![0usize; n];
                for u in 0..23 {
                    let owners: Vec<usize> = (0..n)
                        .filter(|&k| Shard { index: k, count: n }.owns(stage, u))
                        .collect();
                    assert_eq!(owners, vec![owner(stage, u, n)]);
                    per[owners[0]] += 1;
                }
                let (lo, hi) = (per.iter().min().unwrap(), per.iter().max().unwrap());
                assert!(hi - lo <= 1, "round robin: {per:?}");
            }
        }
    }

    /// A merge of `dirs`, written by this build.
    fn merge(dirs: &[PathBuf]) -> Work {
        Work::Merge {
            dirs: dirs.to_vec(),
            program: ProgramIdentity::running().clone(),
        }
    }

    /// Runs `stage` with `count` units whose record is `10 * u` under `work` in `dir`,
    /// counting the units computed.
    fn run(
        dir: &Path,
        work: &Work,
        count: usize,
        computed: &mut Vec<usize>,
    ) -> Result<Option<Vec<u64>>> {
        let config = ExperimentConfig::quick();
        let inputs = inputs(0);
        let units = Units {
            out: dir,
            config: &config,
            inputs: &inputs,
            work,
        };
        units.run("s", count, |u| {
            computed.push(u);
            Ok(10 * u as u64)
        })
    }

    #[test]
    fn shards_merge_into_the_single_run_and_resume_where_they_stopped() {
        let root = tempfile::tempdir().unwrap();
        let single = root.path().join("single");
        let mut computed = Vec::new();
        let all = run(&single, &Work::All, 7, &mut computed).unwrap().unwrap();
        assert_eq!(all, (0..7).map(|u| 10 * u).collect::<Vec<_>>());
        assert_eq!(computed, (0..7).collect::<Vec<_>>());
        // Resumed: nothing recomputed.
        computed.clear();
        assert_eq!(
            run(&single, &Work::All, 7, &mut computed).unwrap().unwrap(),
            all
        );
        assert!(computed.is_empty());

        let dirs: Vec<PathBuf> = (0..3).map(|k| root.path().join(format!("s{k}"))).collect();
        let mut seen = Vec::new();
        for (k, dir) in dirs.iter().enumerate() {
            let mut mine = Vec::new();
            let shard = Shard { index: k, count: 3 };
            assert!(run(dir, &Work::Shard(shard), 7, &mut mine)
                .unwrap()
                .is_none());
            assert!(mine.iter().all(|&u| shard.owns("s", u)), "{mine:?}");
            seen.extend(mine);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..7).collect::<Vec<_>>(), "each unit computed once");
        let merged = run(root.path(), &merge(&dirs), 7, &mut computed);
        assert_eq!(merged.unwrap().unwrap(), all);
        assert!(computed.is_empty(), "a merge computes nothing");

        // A shard killed after its first unit (a torn line after it) resumes there.
        let lost = units_path(&dirs[1], "s");
        let text = std::fs::read_to_string(&lost).unwrap();
        let kept: Vec<&str> = text.lines().take(2).collect();
        std::fs::write(&lost, format!("{}\n{{\"unit\":", kept.join("\n"))).unwrap();
        let e = run(root.path(), &merge(&dirs), 7, &mut computed).unwrap_err();
        assert!(e.to_string().contains("shard 1/3"), "{e}");
        let mut again = Vec::new();
        run(
            &dirs[1],
            &Work::Shard(Shard { index: 1, count: 3 }),
            7,
            &mut again,
        )
        .unwrap();
        let owned: Vec<usize> = (0..7).filter(|&u| owner("s", u, 3) == 1).collect();
        assert!(owned.len() >= 2, "{owned:?}");
        assert_eq!(again, owned[1..], "only the lost units");
        let merged = run(root.path(), &merge(&dirs), 7, &mut computed);
        assert_eq!(merged.unwrap().unwrap(), all);

        // Units written by another build are recomputed by this one, and a merge of
        // another build's shards does not take this build's units.
        let text = std::fs::read_to_string(units_path(&single, "s")).unwrap();
        let running = ProgramIdentity::running().sha256();
        assert!(text.lines().next().unwrap().contains(running), "{text}");
        let other = "d".repeat(64);
        std::fs::write(units_path(&single, "s"), text.replacen(running, &other, 1)).unwrap();
        computed.clear();
        assert_eq!(
            run(&single, &Work::All, 7, &mut computed).unwrap().unwrap(),
            all
        );
        assert_eq!(
            computed,
            (0..7).collect::<Vec<_>>(),
            "another build's units"
        );
        let theirs = Work::Merge {
            dirs: dirs.clone(),
            program: ProgramIdentity::from_sha256(&other),
        };
        let e = run(root.path(), &theirs, 7, &mut computed).unwrap_err();
        assert!(e.to_string().contains("the shards' build"), "{e}");

        // Units of another stage size are not these units.
        let e = run(root.path(), &merge(&dirs), 8, &mut computed).unwrap_err();
        assert!(
            e.to_string().contains("not the units of stage s (8 units)"),
            "{e}"
        );
    }

    fn manifest(dir: &Path, k: usize, n: usize, config: ExperimentConfig, byte: u8) -> PathBuf {
        manifest_by(dir, k, n, config, byte, ProgramIdentity::running())
    }

    fn manifest_by(
        dir: &Path,
        k: usize,
        n: usize,
        config: ExperimentConfig,
        byte: u8,
        program: &ProgramIdentity,
    ) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let m = ShardManifest {
            shard: Shard { index: k, count: n },
            config,
            inputs: inputs(byte),
            program: program.clone(),
            stages: vec!["s".into()],
            seconds: 1.0,
        };
        std::fs::write(dir.join(SHARD_FILE), serde_json::to_string(&m).unwrap()).unwrap();
        dir.to_path_buf()
    }

    #[test]
    fn a_merge_refuses_mixed_missing_or_duplicated_shards_naming_them() {
        let root = tempfile::tempdir().unwrap();
        let q = ExperimentConfig::quick;
        let d = |name: &str| root.path().join(name);
        let a = manifest(&d("a"), 1, 2, q(), 0);
        let b = manifest(&d("b"), 0, 2, q(), 0);
        let (ordered, m) = check_shards(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(ordered, vec![b.clone(), a.clone()]);
        assert_eq!(m.shard.index, 0);

        let other = manifest(
            &d("c"),
            0,
            2,
            ExperimentConfig {
                type1_iters: 7,
                ..q()
            },
            0,
        );
        let e = check_shards(&[a.clone(), other]).unwrap_err().to_string();
        assert!(
            e.contains("different configurations") && e.contains("`type1_iters`"),
            "{e}"
        );
        assert!(e.contains("/c") && e.contains("/a"), "{e}");
        let other = manifest(&d("e"), 0, 2, q(), 1);
        let e = check_shards(&[a.clone(), other]).unwrap_err().to_string();
        assert!(e.contains("different inputs"), "{e}");
        let rebuilt = ProgramIdentity::from_sha256(&"c".repeat(64));
        let other = manifest_by(&d("h"), 0, 2, q(), 0, &rebuilt);
        let e = check_shards(&[a.clone(), other]).unwrap_err().to_string();
        assert!(
            e.contains("different builds") && e.contains("cccccccccccc") && e.contains("/h"),
            "{e}"
        );
        let e = check_shards(std::slice::from_ref(&a))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing shard 0/2"), "{e}");
        let twin = manifest(&d("f"), 1, 2, q(), 0);
        let e = check_shards(&[a.clone(), twin, b.clone()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("shard 1/2 appears twice") && e.contains("/f"),
            "{e}"
        );
        let three = manifest(&d("g"), 2, 3, q(), 0);
        let e = check_shards(&[a, three]).unwrap_err().to_string();
        assert!(e.contains("different shard counts"), "{e}");
        let e = check_shards(&[d("nothing")]).unwrap_err().to_string();
        assert!(e.contains("not a finished shard"), "{e}");
    }
}
