use super::*;

/// `n` one-item tuples around an int: `((((0,),),),)`, `n` deep.
fn nested_tuples(n: usize) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'K', 0];
    p.extend(std::iter::repeat_n(0x85, n));
    p.push(b'.');
    p
}

/// A list doubled `n` times through the memo: `l = [l, l]`, 2^n objects if built.
fn doubled_list(n: usize) -> Vec<u8> {
    let mut p = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..n {
        p.extend([b']', b'(', b'h', 0, b'h', 0, b'e', b'q', 0]);
    }
    p.push(b'.');
    p
}

#[test]
fn nesting_is_bounded_at_max_depth() {
    // An int inside 99 tuples is 100 deep; one more is refused, as are two million.
    assert_eq!(scan(&nested_tuples(MAX_DEPTH as usize - 1)), Ok(()));
    let err = scan(&nested_tuples(MAX_DEPTH as usize)).unwrap_err();
    assert!(err.contains("deeper than 100"), "{err}");
    assert!(scan(&nested_tuples(2_000_000)).is_err());
}

#[test]
fn nesting_through_setitem_counts_too() {
    // {"a": {"a": ... {}}}, pushed as dict, key, dict, key, ... then one SETITEM per level.
    let deep = |n: usize| {
        let mut p = vec![0x80, 2];
        for _ in 0..n {
            p.extend([b'}', b'X', 1, 0, 0, 0, b'a']);
        }
        p.push(b'}');
        p.extend(std::iter::repeat_n(b's', n));
        p.push(b'.');
        p
    };
    assert_eq!(scan(&deep(50)), Ok(()));
    assert!(scan(&deep(500_000)).unwrap_err().contains("deeper than"));
}

#[test]
fn memo_copies_count_against_the_object_budget() {
    // A list of 2^18 objects (a million with its memo copies) fits in the budget; 2^40 does not.
    assert_eq!(scan(&doubled_list(18)), Ok(()));
    let err = scan(&doubled_list(40)).unwrap_err();
    assert!(err.contains("more than 4000000 objects"), "{err}");
}

#[test]
fn malformed_streams_are_refused_with_their_offset() {
    let cases: [(&[u8], &str); 7] = [
        (&[0x80, 2, b'K'], "opcode 0x4b at byte 2: cut short"),
        (&[0x80, 2, b'N'], "ends before its STOP"),
        (
            &[b'X', 0xff, 0xff, 0xff, 0x7f, b'.'],
            "declares a 2147483647-byte string",
        ),
        (b"t.", "no MARK to pop to"),
        // Candle's LONG1 shifts an i64 by 8 per byte (the fuzzer found 9 bytes overflowing it).
        (
            &[0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, b'.'],
            "opcode 0x8a at byte 0: a 9-byte integer (LONG1): more than 8 bytes",
        ),
        (&[b'h', 7, b'.'], "memo 7 was never put"),
        (
            b"i.",
            "opcode 0x69 at byte 0: not an opcode a PyTorch file uses",
        ),
    ];
    for (pickle, want) in cases {
        let err = scan(pickle).unwrap_err();
        assert!(err.contains(want), "{pickle:?}: {err}");
    }
}
