//! Which shard owns which virtual slot, and how that changes when a shard is added
//! or retired, without the actors: plain functions over the owner of each slot (by
//! shard id), so the moves the supervisor makes are tested on their own.
//!
//! Both changes move as few slots as they can and leave the shards even (each owns
//! `SLOTS / shards` slots or one more): a new shard takes its share one slot at a time
//! from whichever shard owns most, a retiring shard's slots go one at a time to
//! whichever owns fewest. Every slot not moved stays where it was, so the calls in it
//! keep their shard and their order.

use super::distributor::SLOTS;

/// A shard's id: never reused while the process lives, so a late message or a
/// replay's watermark from a retired shard cannot be taken for another's.
pub type ShardId = u16;

/// One slot changing hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// The slot.
    pub slot: u16,
    /// Its owner until now.
    pub from: ShardId,
    /// Its owner from now on.
    pub to: ShardId,
}

/// Slots dealt round-robin over `shards`: each gets `SLOTS / shards.len()` or one
/// more.
pub fn dealt(shards: &[ShardId]) -> Vec<ShardId> {
    assert!(!shards.is_empty(), "slots need a shard");
    (0..SLOTS).map(|slot| shards[slot % shards.len()]).collect()
}

/// How many slots each of `shards` owns, in `shards`' order.
pub fn counts(owners: &[ShardId], shards: &[ShardId]) -> Vec<usize> {
    shards
        .iter()
        .map(|&id| owners.iter().filter(|&&owner| owner == id).count())
        .collect()
}

/// Gives `new` (a shard that owns nothing yet) its even share of the slots, taken
/// from the shards owning most. Returns the moves, applied to `owners`.
pub fn take_for_new(owners: &mut [ShardId], shards: &[ShardId], new: ShardId) -> Vec<Move> {
    let share = SLOTS / (shards.len() + 1);
    let mut held = counts(owners, shards);
    let mut moves = Vec::with_capacity(share);
    while moves.len() < share {
        let Some((richest, _)) = held
            .iter()
            .enumerate()
            .max_by_key(|&(i, n)| (*n, usize::MAX - i))
        else {
            break;
        };
        let from = shards[richest];
        // The richest shard's last slot not yet moved: slots near the end go first,
        // which keeps the moves spread over the slot space.
        let Some(slot) = owners.iter().rposition(|&owner| owner == from) else {
            break;
        };
        owners[slot] = new;
        held[richest] -= 1;
        moves.push(Move {
            slot: slot as u16,
            from,
            to: new,
        });
    }
    moves
}

/// Deals `retiring`'s slots to the `remaining` shards, each to whichever owns fewest.
/// Returns the moves, applied to `owners`.
pub fn give_away(owners: &mut [ShardId], retiring: ShardId, remaining: &[ShardId]) -> Vec<Move> {
    assert!(!remaining.is_empty(), "a last shard cannot retire");
    let mut held = counts(owners, remaining);
    let mut moves = Vec::new();
    for (slot, owner) in owners.iter_mut().enumerate() {
        if *owner != retiring {
            continue;
        }
        let (poorest, _) = held
            .iter()
            .enumerate()
            .min_by_key(|&(i, n)| (*n, i))
            .expect("remaining is not empty");
        let to = remaining[poorest];
        *owner = to;
        held[poorest] += 1;
        moves.push(Move {
            slot: slot as u16,
            from: retiring,
            to,
        });
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn even(owners: &[ShardId], shards: &[ShardId]) -> bool {
        let counts = counts(owners, shards);
        let (min, max) = (counts.iter().min(), counts.iter().max());
        counts.iter().sum::<usize>() == SLOTS && max.zip(min).is_some_and(|(a, b)| a - b <= 1)
    }

    #[test]
    fn dealing_is_even_over_any_shard_count() {
        for n in [1u16, 2, 3, 7, 16, 1000] {
            let shards: Vec<ShardId> = (0..n).collect();
            assert!(even(&dealt(&shards), &shards), "{n} shards");
        }
    }

    #[test]
    fn a_new_shard_takes_an_even_share_and_nothing_else_moves() {
        let mut shards: Vec<ShardId> = vec![0, 1, 2];
        let mut owners = dealt(&shards);
        for new in 3..9 {
            let before = owners.clone();
            let moves = take_for_new(&mut owners, &shards, new);
            shards.push(new);
            assert!(even(&owners, &shards), "after adding {new}");
            assert_eq!(moves.len(), SLOTS / shards.len());
            for m in &moves {
                assert_eq!((before[usize::from(m.slot)], m.to), (m.from, new));
            }
            let changed = (0..SLOTS).filter(|&s| before[s] != owners[s]).count();
            assert_eq!(changed, moves.len(), "only the moves changed");
        }
    }

    #[test]
    fn a_retiring_shards_slots_are_dealt_to_the_others_evenly() {
        let mut shards: Vec<ShardId> = (0..5).collect();
        let mut owners = dealt(&shards);
        for retiring in [2u16, 0, 4, 1] {
            let before = owners.clone();
            shards.retain(|&id| id != retiring);
            let moves = give_away(&mut owners, retiring, &shards);
            assert!(even(&owners, &shards), "after retiring {retiring}");
            assert!(!owners.contains(&retiring));
            assert!(moves
                .iter()
                .all(|m| m.from == retiring && shards.contains(&m.to)));
            let changed = (0..SLOTS).filter(|&s| before[s] != owners[s]).count();
            assert_eq!(changed, moves.len());
        }
        assert_eq!(owners, vec![3; SLOTS]);
    }
}
