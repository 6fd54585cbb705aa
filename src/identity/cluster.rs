//! Clustering source records into partners: a union-find over the records, fed with evidence in
//! a fixed order of strength, each kind found by blocking on one key (never by comparing every
//! pair). Pure: no SQL; the same records and config always give the same clusters.
//!
//! Order: config merges → NPI → the link a record already has (a CRM id keeps its partner) →
//! website domain → phone with the same ZIP (or city when a ZIP is missing) → normalized name and
//! city → normalized name where one side has no city → config aliases. Two clusters are never
//! joined when together they would hold two NPIs (or, for domain and name evidence, two cities:
//! a health system's branches share a website and often a name), unless a config merge says so;
//! config splits take a record out of every link. Conflicts are judged on
//! whole clusters, so a second run over its own result finds the same clusters.

use std::collections::HashMap;

use super::records::Record;
use crate::config::AliasConfig;
use crate::partners::normalize_name;

/// How a record was linked into its partner, as stored in `partner_source_record.match_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Method {
    Merge,
    Npi,
    CrmId,
    Domain,
    Phone,
    NameCity,
    Name,
    Alias,
    Split,
    New,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Merge => "merge",
            Method::Npi => "npi",
            Method::CrmId => "crm_id",
            Method::Domain => "domain",
            Method::Phone => "phone",
            Method::NameCity => "name_city",
            Method::Name => "name",
            Method::Alias => "alias",
            Method::Split => "split",
            Method::New => "new",
        }
    }

    pub fn confidence(self) -> f64 {
        match self {
            Method::Domain | Method::NameCity => 0.9,
            Method::Phone => 0.85,
            Method::Name => 0.8,
            _ => 1.0,
        }
    }

    /// What joining two clusters on this evidence must not violate.
    fn checks(self) -> (bool, bool) {
        // (NPIs, cities)
        match self {
            Method::Merge | Method::Npi => (false, false),
            // A website shared across cities is a health system's, not one partner's.
            Method::NameCity | Method::Name | Method::Domain => (true, true),
            _ => (true, false),
        }
    }
}

/// Evidence edges of one kind, in the order they are applied.
pub(super) type Edges = Vec<(Method, Vec<(usize, usize)>)>;

/// The config's say: records forced together (each list one partner) and records forced apart.
pub(super) struct Overrides<'a> {
    pub merges: Vec<Vec<usize>>,
    pub split: Vec<bool>,
    pub aliases: &'a [AliasConfig],
}

/// Every evidence edge between records, by kind.
pub(super) fn evidence(records: &[Record], overrides: &Overrides<'_>) -> Edges {
    let usable = |index: usize| !overrides.split[index];
    let active = |index: usize| usable(index) && records[index].active;
    let mut edges: Edges = Vec::new();

    let mut merge = Vec::new();
    for group in &overrides.merges {
        let members: Vec<usize> = group.iter().copied().filter(|i| usable(*i)).collect();
        star(&members, &mut merge);
    }
    edges.push((Method::Merge, merge));

    let mut npi = Vec::new();
    for block in blocks(records.len(), |i| {
        active(i).then(|| records[i].npi.clone()).flatten()
    }) {
        star(&block, &mut npi);
    }
    edges.push((Method::Npi, npi));

    // The link a record already has: records of one partner stay together, and a record the CRM
    // merged away goes where the CRM merged it.
    let mut kept = Vec::new();
    for block in blocks(records.len(), |i| {
        usable(i).then_some(records[i].partner).flatten()
    }) {
        star(&block, &mut kept);
    }
    let by_key: HashMap<(&str, &str), usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.system.as_str(), r.key.as_str()), i))
        .collect();
    for (index, record) in records.iter().enumerate() {
        if let Some(survivor) = &record.crm_merged_into
            && let Some(&other) = by_key.get(&(record.system.as_str(), survivor.as_str()))
            && usable(index)
            && usable(other)
        {
            kept.push((other, index));
        }
    }
    edges.push((Method::CrmId, kept));

    let mut domain = Vec::new();
    for block in blocks(records.len(), |i| {
        active(i).then(|| records[i].domain.clone()).flatten()
    }) {
        star(&block, &mut domain);
    }
    edges.push((Method::Domain, domain));

    // Phones collide (shared switchboards, recycled numbers): a phone links only with the same
    // ZIP, or the same city where a ZIP is missing.
    let mut phone = Vec::new();
    for block in blocks(records.len(), |i| {
        active(i).then(|| records[i].phone.clone()).flatten()
    }) {
        for same_zip in sub_blocks(&block, |i| records[i].zip.clone()) {
            star(&same_zip, &mut phone);
        }
        for &index in &block {
            let record = &records[index];
            if record.zip.is_some() || record.city.is_none() {
                continue;
            }
            if let Some(&other) = block
                .iter()
                .find(|&&other| other != index && records[other].city == record.city)
            {
                phone.push((other, index));
            }
        }
    }
    edges.push((Method::Phone, phone));

    let mut name_city = Vec::new();
    for block in blocks(records.len(), |i| {
        let record = &records[i];
        (active(i) && !record.normalized.is_empty())
            .then(|| {
                record
                    .city
                    .clone()
                    .map(|city| (record.normalized.clone(), city))
            })
            .flatten()
    }) {
        star(&block, &mut name_city);
    }
    edges.push((Method::NameCity, name_city));

    // Equal names where one side has no city (EHR spellings never have one). Equal names in two
    // known cities are never linked here.
    let mut name = Vec::new();
    for block in blocks(records.len(), |i| {
        (active(i) && !records[i].normalized.is_empty()).then(|| records[i].normalized.clone())
    }) {
        let first = block[0];
        let first_without_city = block.iter().copied().find(|i| records[*i].city.is_none());
        for &index in &block[1..] {
            if records[first].city.is_none() || records[index].city.is_none() {
                name.push((first, index));
            }
            if records[index].city.is_none()
                && let Some(anchor) = first_without_city
                && anchor != index
                && anchor != first
            {
                name.push((anchor, index));
            }
        }
    }
    edges.push((Method::Name, name));

    let mut alias = Vec::new();
    if !overrides.aliases.is_empty() {
        let mut group_of_name: HashMap<String, usize> = HashMap::new();
        let mut group_of_npi: HashMap<String, usize> = HashMap::new();
        for (group, entry) in overrides.aliases.iter().enumerate() {
            for name in entry.names.iter().chain(std::iter::once(&entry.partner)) {
                group_of_name.entry(normalize_name(name)).or_insert(group);
            }
            if let Some(npi) = entry
                .npi
                .as_deref()
                .and_then(|npi| refbridge_model::Npi::parse(npi).ok())
            {
                group_of_npi.entry(npi.to_string()).or_insert(group);
            }
        }
        for block in blocks(records.len(), |i| {
            if !active(i) {
                return None;
            }
            group_of_name
                .get(&records[i].normalized)
                .or_else(|| records[i].npi.as_ref().and_then(|n| group_of_npi.get(n)))
                .copied()
        }) {
            star(&block, &mut alias);
        }
    }
    edges.push((Method::Alias, alias));
    edges
}

/// Record indices grouped by a key, groups in order of their first member, members in order.
fn blocks<K: std::hash::Hash + Eq>(
    count: usize,
    key: impl Fn(usize) -> Option<K>,
) -> Vec<Vec<usize>> {
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in 0..count {
        if let Some(key) = key(i) {
            let at = *index.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[at].push(i);
        }
    }
    groups.retain(|group| group.len() > 1);
    groups
}

fn sub_blocks<K: std::hash::Hash + Eq>(
    members: &[usize],
    key: impl Fn(usize) -> Option<K>,
) -> Vec<Vec<usize>> {
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &i in members {
        if let Some(key) = key(i) {
            let at = *index.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[at].push(i);
        }
    }
    groups
}

/// Edges from a block's first member to each other member.
fn star(block: &[usize], edges: &mut Vec<(usize, usize)>) {
    if let Some((&first, rest)) = block.split_first() {
        edges.extend(rest.iter().map(|&other| (first, other)));
    }
}

/// A union-find whose roots know the NPIs and cities of their cluster (interned).
struct UnionFind {
    parent: Vec<usize>,
    size: Vec<usize>,
    npis: Vec<Vec<u32>>,
    cities: Vec<Vec<u32>>,
}

impl UnionFind {
    fn new(count: usize) -> UnionFind {
        UnionFind {
            parent: (0..count).collect(),
            size: vec![1; count],
            npis: vec![Vec::new(); count],
            cities: vec![Vec::new(); count],
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Joins the clusters of `a` and `b` unless that would put two NPIs (or two cities) in one
    /// cluster; returns the new root, or `None` when refused or already one cluster.
    fn union(&mut self, a: usize, b: usize, check_npis: bool, check_cities: bool) -> Option<usize> {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return None;
        }
        if (check_npis && clash(&self.npis[ra], &self.npis[rb]))
            || (check_cities && clash(&self.cities[ra], &self.cities[rb]))
        {
            return None;
        }
        let (big, small) = if self.size[ra] >= self.size[rb] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[small] = big;
        self.size[big] += self.size[small];
        let npis = std::mem::take(&mut self.npis[small]);
        merge_sorted(&mut self.npis[big], npis);
        let cities = std::mem::take(&mut self.cities[small]);
        merge_sorted(&mut self.cities[big], cities);
        Some(big)
    }
}

/// Two non-empty sets that are not the same single value: joining them would hold two values.
/// (Monotone: if two clusters clash, so do any clusters that contain them.)
fn clash(a: &[u32], b: &[u32]) -> bool {
    let same_single_value = a.len() == 1 && a == b;
    !(a.is_empty() || b.is_empty() || same_single_value)
}

fn merge_sorted(into: &mut Vec<u32>, from: Vec<u32>) {
    into.extend(from);
    into.sort_unstable();
    into.dedup();
}

/// The clusters and how each record was linked into its own.
pub(super) struct Clustering {
    /// A cluster number per record (the index of its root record).
    pub cluster: Vec<usize>,
    pub method: Vec<Method>,
    pub confidence: Vec<f64>,
}

pub(super) fn cluster(records: &[Record], edges: &Edges, split: &[bool]) -> Clustering {
    let count = records.len();
    let mut union_find = UnionFind::new(count);
    let mut interned: HashMap<String, u32> = HashMap::new();
    let mut intern = |text: &str| -> u32 {
        let next = interned.len() as u32;
        *interned.entry(text.to_string()).or_insert(next)
    };
    for (index, record) in records.iter().enumerate() {
        if !record.active || split[index] {
            continue;
        }
        if let Some(npi) = &record.npi {
            union_find.npis[index] = vec![intern(npi)];
        }
        if let Some(city) = &record.city {
            // Cities live in their own number space from NPIs; a prefix keeps them apart.
            union_find.cities[index] = vec![intern(&format!("city:{city}"))];
        }
    }
    for (method, list) in edges {
        let (check_npis, check_cities) = method.checks();
        for &(a, b) in list {
            union_find.union(a, b, check_npis, check_cities);
        }
    }
    let cluster: Vec<usize> = (0..count).map(|i| union_find.find(i)).collect();

    // Attribution: replay the evidence, strongest first, inside the final clusters; a record
    // takes the method of the first link that joins it to another record. Its existing link
    // (CrmId) counts last, so that a method says what links the record today.
    let mut method: Vec<Option<Method>> = vec![None; count];
    let mut replay = UnionFind::new(count);
    let mut waiting: Vec<Vec<usize>> = (0..count).map(|i| vec![i]).collect();
    let attributed = edges
        .iter()
        .filter(|(m, _)| *m != Method::CrmId)
        .chain(edges.iter().filter(|(m, _)| *m == Method::CrmId));
    for (kind, list) in attributed {
        for &(a, b) in list {
            if cluster[a] != cluster[b] {
                continue;
            }
            let (ra, rb) = (replay.find(a), replay.find(b));
            let Some(root) = replay.union(a, b, false, false) else {
                continue;
            };
            let mut joined = std::mem::take(&mut waiting[ra]);
            joined.append(&mut std::mem::take(&mut waiting[rb]));
            for record in joined {
                method[record] = Some(*kind);
            }
            waiting[root].clear();
        }
    }
    let mut methods = Vec::with_capacity(count);
    let mut confidences = Vec::with_capacity(count);
    for (index, record) in records.iter().enumerate() {
        let (chosen, confidence) = match method[index] {
            _ if split[index] => (Method::Split, 1.0),
            None => (Method::New, 1.0),
            // Held only by its existing link: a CRM record keeps its partner by CRM id; an EHR
            // spelling keeps the method it was linked by.
            Some(Method::CrmId) if !record.is_crm() => {
                match record.stored_method.as_deref().and_then(parse_method) {
                    Some(stored) => (stored, record.stored_confidence),
                    None => (Method::CrmId, 1.0),
                }
            }
            Some(kind) => (kind, kind.confidence()),
        };
        methods.push(chosen);
        confidences.push(confidence);
    }
    Clustering {
        cluster,
        method: methods,
        confidence: confidences,
    }
}

fn parse_method(text: &str) -> Option<Method> {
    [
        Method::Merge,
        Method::Npi,
        Method::CrmId,
        Method::Domain,
        Method::Phone,
        Method::NameCity,
        Method::Name,
        Method::Alias,
        Method::Split,
        Method::New,
    ]
    .into_iter()
    .find(|method| method.as_str() == text)
}
