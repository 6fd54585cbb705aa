//! Clusters → partner ids, stably, and everything that follows a partner moved along.
//!
//! A partner id stays with the cluster holding most of its records (ties: the cluster holding its
//! lowest source record id); a cluster keeps the lowest partner id it holds and the others are
//! merged into it (`partner.merged_into`, their rows kept so old ids stay readable); a cluster
//! holding none gets a new partner row. Referrals follow their spelling's record when it moved on
//! its own, and their partner when it was merged. Nothing here decides what belongs together:
//! that is [`super::cluster`]'s job.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{Connection, params};

use super::cluster::Clustering;
use super::records::Loaded;
use crate::ledger::store::{self, NewPartner, NewSourceRecord};

/// Where each record ended up.
pub(super) struct Assignment {
    /// The partner of each record (same order as the records).
    pub partner_of: Vec<i64>,
    /// Partners merged into another by this run.
    pub merged: u64,
}

pub(super) fn apply(
    connection: &Connection,
    loaded: &Loaded,
    clustering: &Clustering,
    now: &str,
) -> rusqlite::Result<Assignment> {
    let records = &loaded.records;
    // Clusters in order of their first record; members in record order.
    let mut cluster_index: HashMap<usize, usize> = HashMap::new();
    let mut clusters: Vec<Vec<usize>> = Vec::new();
    for (record, root) in clustering.cluster.iter().enumerate() {
        let at = *cluster_index.entry(*root).or_insert_with(|| {
            clusters.push(Vec::new());
            clusters.len() - 1
        });
        clusters[at].push(record);
    }
    let cluster_of = |record: usize| cluster_index[&clustering.cluster[record]];

    // Which cluster keeps each partner id: the one holding most of its records; ties go to the
    // cluster holding its lowest source record id (records are in id order).
    let mut holdings: HashMap<i64, Vec<(usize, usize)>> = HashMap::new();
    for (index, record) in records.iter().enumerate() {
        if let Some(partner) = record.partner {
            let list = holdings.entry(partner).or_default();
            let cluster = cluster_of(index);
            match list.iter_mut().find(|(c, _)| *c == cluster) {
                Some((_, count)) => *count += 1,
                None => list.push((cluster, 1)),
            }
        }
    }
    let mut owned: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); clusters.len()];
    for (partner, list) in &holdings {
        let mut best = list[0];
        for &(cluster, count) in &list[1..] {
            if count > best.1 {
                best = (cluster, count);
            }
        }
        owned[best.0].insert(*partner);
    }

    let mut partner_of = vec![0i64; records.len()];
    let mut losers: Vec<(i64, i64)> = Vec::new();
    let mut winners: Vec<(i64, usize)> = Vec::new();
    for (cluster, members) in clusters.iter().enumerate() {
        let winner = match owned[cluster].first() {
            Some(&winner) => {
                losers.extend(owned[cluster].iter().skip(1).map(|&loser| (loser, winner)));
                winner
            }
            None => create_partner(connection, loaded, members, now)?,
        };
        winners.push((winner, cluster));
        for &member in members {
            partner_of[member] = winner;
        }
    }

    // Partners something was merged into before: their followers move along (chains stay one
    // step long).
    let followed: std::collections::HashSet<i64> =
        loaded.merged_into.values().flatten().copied().collect();
    for &(loser, winner) in &losers {
        connection
            .prepare_cached("UPDATE partner SET merged_into = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![loser, winner, now])?;
        if followed.contains(&loser) {
            connection
                .prepare_cached(
                    "UPDATE partner SET merged_into = ?2, updated_at = ?3 WHERE merged_into = ?1",
                )?
                .execute(params![loser, winner, now])?;
        }
        tracing::info!(
            partner_id = loser,
            into = winner,
            "partner merged into another"
        );
    }

    let mut moved_records: Vec<(i64, i64)> = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let partner = partner_of[index];
        let method = clustering.method[index].as_str();
        let confidence = clustering.confidence[index];
        match record.id {
            Some(id) => {
                let changed = record.stored_partner != Some(partner)
                    || record.stored_method.as_deref() != Some(method)
                    || record.stored_confidence != confidence;
                if changed || record.crm.is_some() {
                    connection
                        .prepare_cached(
                            "UPDATE partner_source_record SET partner_id = ?2, match_method = ?3,
                                 confidence = ?4, raw_name = ?5, normalized_name = ?6
                             WHERE id = ?1 AND (partner_id IS NOT ?2 OR match_method IS NOT ?3
                                 OR confidence IS NOT ?4 OR raw_name IS NOT ?5
                                 OR normalized_name IS NOT ?6)",
                        )?
                        .execute(params![
                            id,
                            partner,
                            method,
                            confidence,
                            record.raw_name,
                            record.normalized
                        ])?;
                }
                if record.stored_partner != Some(partner) && !record.is_crm() {
                    moved_records.push((id, partner));
                }
            }
            None => {
                store::insert_source_record(
                    connection,
                    &NewSourceRecord {
                        partner_id: partner,
                        system: &record.system,
                        external_key: &record.key,
                        raw_name: &record.raw_name,
                        normalized_name: &record.normalized,
                        match_method: method,
                        confidence,
                    },
                    now,
                )?;
            }
        }
    }

    // Referrals follow their spelling first (a record that moved on its own, as in a split),
    // then their partner (everything still at a merged partner goes to where it was merged).
    if !moved_records.is_empty() {
        // One pass over the referrals, however many spellings moved (no index on the spelling:
        // it would cost every import more than this costs the rare run that moves one).
        connection.execute_batch(
            "CREATE TEMP TABLE identity_moved_record (record INTEGER PRIMARY KEY, partner INTEGER NOT NULL)",
        )?;
        for (record_id, partner) in &moved_records {
            connection
                .prepare_cached("INSERT INTO temp.identity_moved_record VALUES (?1, ?2)")?
                .execute(params![record_id, partner])?;
        }
        connection.execute_batch(
            "UPDATE referral SET partner_id = moved.partner
             FROM temp.identity_moved_record AS moved
             WHERE moved.record = referral.partner_source_record_id
               AND referral.partner_id IS NOT moved.partner;
             DROP TABLE temp.identity_moved_record;",
        )?;
    }
    for &(loser, winner) in &losers {
        connection
            .prepare_cached("UPDATE referral SET partner_id = ?2 WHERE partner_id = ?1")?
            .execute(params![loser, winner])?;
    }

    reconcile_npis(connection, loaded, &clusters, &winners, now)?;
    for &(winner, cluster) in &winners {
        if let Some(source_type) = clusters[cluster].iter().find_map(|&member| {
            records[member]
                .crm
                .as_ref()
                .and_then(|crm| crm.source_type.clone())
        }) {
            connection
                .prepare_cached(
                    "UPDATE partner SET source_type = ?2, updated_at = ?3
                     WHERE id = ?1 AND source_type IS NULL",
                )?
                .execute(params![winner, source_type, now])?;
        }
    }
    Ok(Assignment {
        partner_of,
        merged: losers.len() as u64,
    })
}

/// A new partner for a cluster that holds none: named after its first named record, its origin
/// that record's system.
fn create_partner(
    connection: &Connection,
    loaded: &Loaded,
    members: &[usize],
    now: &str,
) -> rusqlite::Result<i64> {
    let records = &loaded.records;
    let first = members
        .iter()
        .copied()
        .find(|&member| !records[member].raw_name.is_empty())
        .unwrap_or(members[0]);
    let record = &records[first];
    let source_type = members.iter().find_map(|&member| {
        records[member]
            .crm
            .as_ref()
            .and_then(|crm| crm.source_type.clone())
    });
    store::insert_partner(
        connection,
        &NewPartner {
            name: &record.raw_name,
            normalized_name: &record.normalized,
            npi: None,
            source_type: source_type.as_deref(),
            origin: &record.system,
        },
        now,
    )
}

/// Keeps `partner.npi` (UNIQUE) true to the clusters: a partner keeps its NPI while its records
/// carry it (or carry none that another partner needs); a partner without one takes the lowest
/// NPI its records carry that no live partner holds, clearing it first on a merged partner.
fn reconcile_npis(
    connection: &Connection,
    loaded: &Loaded,
    clusters: &[Vec<usize>],
    winners: &[(i64, usize)],
    now: &str,
) -> rusqlite::Result<()> {
    let records = &loaded.records;
    let wanted: Vec<(i64, BTreeSet<&str>)> = winners
        .iter()
        .map(|&(winner, cluster)| {
            let npis = clusters[cluster]
                .iter()
                .filter(|&&member| records[member].active)
                .filter_map(|&member| records[member].npi.as_deref())
                .collect();
            (winner, npis)
        })
        .collect();
    let mut wanted_by: HashMap<&str, Vec<i64>> = HashMap::new();
    for (winner, npis) in &wanted {
        for npi in npis {
            wanted_by.entry(npi).or_default().push(*winner);
        }
    }
    // npi → (holder, holder is live)
    let mut holder: HashMap<String, (i64, bool)> = HashMap::new();
    let mut npi_of: HashMap<i64, String> = HashMap::new();
    {
        let mut statement =
            connection.prepare("SELECT id, npi, merged_into FROM partner WHERE npi IS NOT NULL")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<i64>>(2)?,
            ))
        })?;
        for row in rows {
            let (id, npi, merged_into) = row?;
            holder.insert(npi.clone(), (id, merged_into.is_none()));
            npi_of.insert(id, npi);
        }
    }
    let clear = |id: i64| -> rusqlite::Result<()> {
        connection
            .prepare_cached("UPDATE partner SET npi = NULL, updated_at = ?2 WHERE id = ?1")?
            .execute(params![id, now])?;
        Ok(())
    };
    for (winner, npis) in &wanted {
        let Some(current) = npi_of.get(winner).cloned() else {
            continue;
        };
        let needed_elsewhere = wanted_by
            .get(current.as_str())
            .is_some_and(|by| by.iter().any(|other| other != winner));
        let keep = npis.contains(current.as_str()) || (npis.is_empty() && !needed_elsewhere);
        if !keep {
            clear(*winner)?;
            holder.remove(&current);
            npi_of.remove(winner);
        }
    }
    for (winner, npis) in &wanted {
        if npi_of.contains_key(winner) {
            continue;
        }
        for npi in npis {
            match holder.get(*npi).copied() {
                Some((_, true)) => continue,
                Some((merged, false)) => {
                    clear(merged)?;
                    npi_of.remove(&merged);
                }
                None => {}
            }
            connection
                .prepare_cached("UPDATE partner SET npi = ?2, updated_at = ?3 WHERE id = ?1")?
                .execute(params![winner, npi, now])?;
            holder.insert(npi.to_string(), (*winner, true));
            npi_of.insert(*winner, npi.to_string());
            break;
        }
    }
    Ok(())
}
