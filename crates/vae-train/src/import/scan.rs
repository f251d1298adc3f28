//! A bounded walk over a pickle's opcodes before Candle's unpickler runs it.
//!
//! Candle's `pickle::Stack` builds every object the stream describes, clones a memoised object on each `BINGET`, and
//! drops nested objects recursively: a 2 MB pickle can nest two million tuples (a stack overflow on drop) or double
//! a list thirty times through the memo (a billion objects). This walk runs the same stack machine on sizes only,
//! each value its nesting depth and object count, so it allocates nothing the file declares and refuses what would
//! be too deep or too large before anything is built.

use std::collections::HashMap;

/// Deeper than any `state_dict` (a checkpoint dict of dicts of tensors is under 10), far below a stack overflow.
pub const MAX_DEPTH: u32 = 100;

/// Objects one pickle may build in all, memo copies included (a 300-tensor `state_dict` builds about 10 000).
pub const MAX_OBJECTS: u64 = 4_000_000;

/// What a value on the walk's stack stands for: a nesting depth and a count of objects, or a `MARK`.
#[derive(Clone, Copy)]
enum Slot {
    Value { depth: u32, objects: u64 },
    Mark,
}

const LEAF: Slot = Slot::Value {
    depth: 1,
    objects: 1,
};

/// The stack machine of sizes, with the budget of objects built so far.
#[derive(Default)]
struct Walk {
    stack: Vec<Slot>,
    memo: HashMap<u32, Slot>,
    built: u64,
}

/// Walks `pickle` to its `STOP`; an error names the first opcode that is unknown, malformed, or builds too much.
pub fn scan(pickle: &[u8]) -> Result<(), String> {
    let mut walk = Walk::default();
    let mut at = 0;
    loop {
        let op = *pickle
            .get(at)
            .ok_or("the pickle ends before its STOP opcode")?;
        let arg = argument_len(op, &pickle[at + 1..])
            .map_err(|e| format!("opcode {op:#04x} at byte {at}: {e}"))?;
        let body = &pickle[at + 1..at + 1 + arg];
        if op == b'.' {
            return Ok(());
        }
        walk.step(op, body)
            .map_err(|e| format!("opcode {op:#04x} at byte {at}: {e}"))?;
        at += 1 + arg;
    }
}

/// The bytes after opcode `op` that belong to it, checked to be there.
fn argument_len(op: u8, rest: &[u8]) -> Result<usize, String> {
    let fixed = |n: usize| match rest.len() >= n {
        true => Ok(n),
        false => Err("cut short".to_string()),
    };
    let u32_at = || -> Result<usize, String> {
        let b: [u8; 4] = rest
            .get(..4)
            .ok_or("cut short")?
            .try_into()
            .expect("4 bytes");
        Ok(u32::from_le_bytes(b) as usize)
    };
    match op {
        0x80 | b'K' | b'q' | b'h' => fixed(1),
        b'M' => fixed(2),
        b'J' | b'r' | b'j' => fixed(4),
        b'G' => fixed(8),
        0x8a => {
            let n = *rest.first().ok_or("cut short")? as usize;
            // Candle decodes a LONG1 into an i64 and shifts by 8 per byte: past 8 bytes the shift overflows.
            match n {
                0..=8 => fixed(1 + n),
                _ => Err(format!("a {n}-byte integer (LONG1): more than 8 bytes")),
            }
        }
        b'X' => {
            let n = u32_at()?;
            fixed(4usize.checked_add(n).ok_or("length overflows")?)
                .map_err(|_| format!("declares a {n}-byte string past the end of the pickle"))
        }
        b'c' => {
            let first = rest.iter().position(|&b| b == b'\n').ok_or("cut short")?;
            let second = rest[first + 1..]
                .iter()
                .position(|&b| b == b'\n')
                .ok_or("cut short")?;
            Ok(first + 1 + second + 1)
        }
        b')' | b'R' | b'(' | b't' | b'Q' | 0x85 | 0x86 | 0x87 | 0x88 | 0x89 | b'N' | b's'
        | b'u' | b'}' | b'd' | b'b' | b'.' | 0x81 | b']' | b'a' | b'e' => Ok(0),
        _ => Err("not an opcode a PyTorch file uses".into()),
    }
}

impl Walk {
    /// One opcode's effect on the sizes, as Candle's `Stack::read` has it on the objects.
    fn step(&mut self, op: u8, body: &[u8]) -> Result<(), String> {
        match op {
            // A protocol number is no value; every other leaf pushes one object.
            0x80 => {}
            b'K' | b'M' | b'J' | b'G' | 0x8a | b'X' | b'c' | 0x88 | 0x89 | b'N' | b'}' | b'd'
            | b')' | b']' => self.push_new(LEAF, 1)?,
            b'(' => self.stack.push(Slot::Mark),
            b'Q' => {
                let id = self.pop()?;
                self.push_new(holding(&[id]), 1)?
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                self.push_new(holding(&items), 1)?
            }
            b't' => {
                let items = self.pop_to_mark()?;
                self.push_new(holding(&items), 1)?
            }
            b'R' | b'b' | 0x81 => {
                let (second, first) = (self.pop()?, self.pop()?);
                self.push_new(holding(&[first, second]), 1)?
            }
            b'a' => {
                let item = self.pop()?;
                self.extend_last(&[item])?
            }
            b's' => {
                let (value, key) = (self.pop()?, self.pop()?);
                self.extend_last(&[key, value])?
            }
            b'e' | b'u' => {
                let items = self.pop_to_mark()?;
                self.extend_last(&items)?
            }
            // Candle's memo stores a clone of the top, and each get pushes another clone.
            b'q' | b'r' => {
                let top = *self.stack.last().ok_or("a memo put on an empty stack")?;
                self.charge(top, objects_of(top))?;
                self.memo.insert(memo_id(body), top);
            }
            b'h' | b'j' => {
                let id = memo_id(body);
                let copy = *self
                    .memo
                    .get(&id)
                    .ok_or_else(|| format!("memo {id} was never put"))?;
                self.push_new(copy, objects_of(copy))?
            }
            _ => unreachable!("argument_len admits only the opcodes above"),
        }
        Ok(())
    }

    /// Pushes `slot`, whose making allocated `cost` new objects.
    fn push_new(&mut self, slot: Slot, cost: u64) -> Result<(), String> {
        self.charge(slot, cost)?;
        self.stack.push(slot);
        Ok(())
    }

    /// Checks `slot`'s depth and adds `cost` to the objects built so far, refusing past the bounds.
    fn charge(&mut self, slot: Slot, cost: u64) -> Result<(), String> {
        if let Slot::Value { depth, .. } = slot {
            if depth > MAX_DEPTH {
                return Err(format!("nests objects deeper than {MAX_DEPTH}"));
            }
        }
        self.built = self.built.saturating_add(cost);
        if self.built > MAX_OBJECTS {
            return Err(format!("builds more than {MAX_OBJECTS} objects"));
        }
        Ok(())
    }

    fn pop(&mut self) -> Result<Slot, String> {
        match self.stack.pop() {
            Some(slot @ Slot::Value { .. }) => Ok(slot),
            Some(Slot::Mark) => Err("a MARK where a value belongs".into()),
            None => Err("pops an empty stack".into()),
        }
    }

    fn pop_to_mark(&mut self) -> Result<Vec<Slot>, String> {
        let mark = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or("no MARK to pop to")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    /// `APPEND`, `SETITEM` and their plural forms: the container under the items takes them in.
    fn extend_last(&mut self, items: &[Slot]) -> Result<(), String> {
        let Slot::Value { depth, objects } = self.pop()? else {
            unreachable!("pop returns values only")
        };
        let Slot::Value {
            depth: inner,
            objects: added,
        } = holding(items)
        else {
            unreachable!("holding returns a value")
        };
        // `holding` counted a container of its own, which the items do not get.
        let grown = Slot::Value {
            depth: depth.max(inner),
            objects: objects.saturating_add(added - 1),
        };
        self.push_new(grown, 0)
    }
}

/// The size of one new object holding `items`.
fn holding(items: &[Slot]) -> Slot {
    let (mut depth, mut objects) = (0, 1u64);
    for item in items {
        if let Slot::Value {
            depth: d,
            objects: n,
        } = *item
        {
            depth = depth.max(d);
            objects = objects.saturating_add(n);
        }
    }
    Slot::Value {
        depth: depth + 1,
        objects,
    }
}

fn objects_of(slot: Slot) -> u64 {
    match slot {
        Slot::Value { objects, .. } => objects,
        Slot::Mark => 0,
    }
}

/// A memo index: one byte for the short forms, four little-endian bytes for the long ones.
fn memo_id(body: &[u8]) -> u32 {
    match body.len() {
        1 => body[0] as u32,
        _ => u32::from_le_bytes(body[..4].try_into().expect("4 bytes")),
    }
}

#[cfg(test)]
mod tests;
