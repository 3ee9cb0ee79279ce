use super::*;

fn dec(s: &str) -> Result<Command, DecodeError> {
    decode_command(s, &Limits::default())
}

fn room(s: &str) -> RoomId {
    RoomId::new(s).expect("valid room")
}

#[test]
fn decodes_every_command() {
    assert_eq!(
        dec(r#"{"type":"join","id":1,"room":"shop-42"}"#),
        Ok(Command::Join {
            id: 1,
            room: room("shop-42"),
            since: None,
            mode: Mode::All,
        })
    );
    assert_eq!(
        dec(r#"{"type":"join","id":1,"room":"shop-42","since":{"epoch":"8f3a","seq":117}}"#),
        Ok(Command::Join {
            id: 1,
            room: room("shop-42"),
            since: Some(Since {
                epoch: "8f3a".into(),
                seq: 117
            }),
            mode: Mode::All,
        })
    );
    assert_eq!(
        dec(r#"{"type":"leave","id":2,"room":"shop-42"}"#),
        Ok(Command::Leave {
            id: 2,
            room: room("shop-42")
        })
    );
    assert_eq!(
        dec(r#"{"type":"comment","id":3,"room":"shop-42","text":"这个颜色好看!"}"#),
        Ok(Command::Comment {
            id: 3,
            room: room("shop-42"),
            text: "这个颜色好看!".into()
        })
    );
    assert_eq!(
        dec(r#"{"type":"like","id":4,"room":"shop-42","count":5}"#),
        Ok(Command::Like {
            id: 4,
            room: room("shop-42"),
            count: 5
        })
    );
    assert_eq!(
        dec(r#"{"type":"vote","id":5,"room":"shop-42","poll":"p-7","option":1}"#),
        Ok(Command::Vote {
            id: 5,
            room: room("shop-42"),
            poll: PollId::new("p-7").expect("poll"),
            option: 1
        })
    );
    assert_eq!(
        dec(r#"{"type":"claim","id":7,"room":"shop-42","coupon":"c-1"}"#),
        Ok(Command::Claim {
            id: 7,
            room: room("shop-42"),
            coupon: InteractionId::new("c-1").expect("coupon"),
        })
    );
    assert_eq!(
        dec(r#"{"type":"ping","id":6}"#),
        Ok(Command::Ping { id: 6 })
    );
}

#[test]
fn escaped_text_is_unescaped() {
    let cmd = dec(r#"{"type":"comment","id":3,"room":"r","text":"a\"b\nc\u00e9"}"#);
    assert_eq!(
        cmd,
        Ok(Command::Comment {
            id: 3,
            room: room("r"),
            text: "a\"b\ncé".into()
        })
    );
}

#[test]
fn errors_echo_the_id_and_classify() {
    let e = dec("{not json").expect_err("invalid json");
    assert_eq!((e.id, e.code), (None, ErrorCode::BadRequest));

    let e = dec(r#"{"type":"dance","id":9}"#).expect_err("unknown type");
    assert_eq!((e.id, e.code), (Some(9), ErrorCode::BadRequest));
    assert!(e.message.contains("dance"));

    let e = dec(r#"{"type":"join","id":9,"room":"bad room"}"#).expect_err("bad room");
    assert_eq!((e.id, e.code), (Some(9), ErrorCode::InvalidRoom));

    let e = dec(r#"{"type":"join","id":9}"#).expect_err("no room");
    assert_eq!((e.id, e.code), (Some(9), ErrorCode::BadRequest));

    let long = "好".repeat(201);
    let e = dec(&format!(
        r#"{{"type":"comment","id":4,"room":"r","text":"{long}"}}"#
    ))
    .expect_err("too long");
    assert_eq!((e.id, e.code), (Some(4), ErrorCode::TooLarge));
    let ok = "好".repeat(200);
    assert!(
        dec(&format!(
            r#"{{"type":"comment","id":4,"room":"r","text":"{ok}"}}"#
        ))
        .is_ok()
    );

    let e = dec(r#"{"type":"comment","id":4,"room":"r","text":"  "}"#).expect_err("blank");
    assert_eq!(e.code, ErrorCode::BadRequest);

    let e = dec(r#"{"type":"like","id":5,"room":"r","count":101}"#).expect_err("too many");
    assert_eq!((e.id, e.code), (Some(5), ErrorCode::TooLarge));
    let e = dec(r#"{"type":"like","id":5,"room":"r","count":0}"#).expect_err("zero");
    assert_eq!(e.code, ErrorCode::BadRequest);
    let e = dec(r#"{"type":"like","id":5,"room":"r","count":-3}"#).expect_err("negative");
    assert_eq!(e.code, ErrorCode::BadRequest);

    let e = dec(r#"{"type":"ping"}"#).expect_err("no id");
    assert_eq!((e.id, e.code), (None, ErrorCode::BadRequest));
    let e = dec(r#"{"type":"ping","id":-1}"#).expect_err("negative id");
    assert_eq!(e.code, ErrorCode::BadRequest);

    let e = dec(r#"{"type":"join","id":1,"room":"r","since":{"epoch":1}}"#).expect_err("since");
    assert_eq!((e.id, e.code), (Some(1), ErrorCode::BadRequest));

    let e = dec(r#"{"type":"vote","id":1,"room":"r","poll":"p","option":"x"}"#).expect_err("opt");
    assert_eq!(e.code, ErrorCode::BadRequest);
    let e = dec(r#"{"type":"claim","id":2,"room":"r"}"#).expect_err("no coupon");
    assert_eq!((e.id, e.code), (Some(2), ErrorCode::BadRequest));
    assert!(e.message.contains("`coupon`"), "{}", e.message);
    let e = dec(r#"{"type":"claim","id":3,"room":"r","coupon":"c 1"}"#).expect_err("bad id");
    assert_eq!((e.id, e.code), (Some(3), ErrorCode::BadRequest));
    let e = dec("[1,2]").expect_err("array");
    assert_eq!(e.code, ErrorCode::BadRequest);
}

#[test]
fn an_encoded_command_decodes_to_itself() {
    let commands = [
        r#"{"type":"join","id":1,"room":"shop-42"}"#,
        r#"{"type":"join","id":1,"room":"shop-42","since":{"epoch":"8f3a","seq":117}}"#,
        r#"{"type":"leave","id":2,"room":"shop-42"}"#,
        r#"{"type":"comment","id":3,"room":"shop-42","text":"这个\"颜色\"好看!"}"#,
        r#"{"type":"like","id":4,"room":"shop-42","count":5}"#,
        r#"{"type":"vote","id":5,"room":"shop-42","poll":"p-7","option":1}"#,
        r#"{"type":"claim","id":7,"room":"shop-42","coupon":"c-1"}"#,
        r#"{"type":"open","id":8,"room":"shop-42","what":"quiz","question":"几号?","options":["1","2"],"answer":1,"duration_s":20}"#,
        r#"{"type":"ping","id":6}"#,
    ];
    for json in commands {
        let command = dec(json).expect("valid");
        let encoded = command.encode();
        assert_eq!(dec(&encoded).as_ref(), Ok(&command), "{encoded}");
        let as_sent: serde_json::Value = serde_json::from_str(json).expect("json");
        let as_encoded: serde_json::Value = serde_json::from_str(&encoded).expect("json");
        assert_eq!(as_encoded, as_sent, "same fields as the documented command");
    }
}

#[test]
fn a_hosts_open_carries_the_apis_body() {
    let json = r#"{"type":"open","id":8,"room":"shop-42","what":"coupon","title":"9折","stock":100,"audience":{"tags":["vip"]}}"#;
    let Ok(Command::Open {
        id,
        room: r,
        what,
        body,
    }) = dec(json)
    else {
        panic!("an open command: {json}");
    };
    assert_eq!((id, r, what), (8, room("shop-42"), Opening::Coupon));
    let body = serde_json::Value::Object(body);
    assert_eq!(
        body,
        serde_json::json!({"title":"9折","stock":100,"audience":{"tags":["vip"]}}),
        "every field but type, id, room and what"
    );
    for (w, what) in [
        ("keyword", Opening::Keyword),
        ("quiz", Opening::Quiz),
        ("lottery", Opening::Lottery),
        ("coupon", Opening::Coupon),
    ] {
        assert_eq!(Opening::parse(w), Some(what));
        assert_eq!(what.as_str(), w);
    }

    let e = dec(r#"{"type":"open","id":9,"room":"r"}"#).expect_err("no what");
    assert_eq!((e.id, e.code), (Some(9), ErrorCode::BadRequest));
    assert!(e.message.contains("`what`"), "{}", e.message);
    let e = dec(r#"{"type":"open","id":9,"room":"r","what":"poll"}"#).expect_err("bad what");
    assert_eq!((e.id, e.code), (Some(9), ErrorCode::BadRequest));
    assert!(e.message.contains("poll"), "{}", e.message);
    let e = dec(r#"{"type":"open","id":9,"what":"quiz"}"#).expect_err("no room");
    assert_eq!((e.id, e.code), (Some(9), ErrorCode::BadRequest));
}

#[test]
fn splits_frames_on_newlines() {
    let parts: Vec<&str> = split_frame("{\"a\":1}\n\n{\"b\":2}\n").collect();
    assert_eq!(parts, vec!["{\"a\":1}", "{\"b\":2}"]);
}

proptest::proptest! {
    #[test]
    fn decode_never_panics(s in "\\PC{0,200}") {
        let _ = dec(&s);
    }

    #[test]
    fn comment_roundtrips(text in "[^\\p{C}]{1,200}", id in 0u64..u64::MAX) {
        proptest::prop_assume!(!text.trim().is_empty());
        let json = serde_json::json!({"type":"comment","id":id,"room":"r","text":text}).to_string();
        proptest::prop_assert_eq!(dec(&json), Ok(Command::Comment { id, room: room("r"), text }));
    }
}

#[test]
fn a_join_may_ask_for_adaptive_delivery() {
    let join = |extra: &str| dec(&format!(r#"{{"type":"join","id":1,"room":"r"{extra}}}"#));
    let adaptive = |max_rate| Command::Join {
        id: 1,
        room: room("r"),
        since: None,
        mode: Mode::Adaptive { max_rate },
    };
    assert_eq!(join(r#","mode":"adaptive""#), Ok(adaptive(20)));
    assert_eq!(join(r#","mode":"adaptive","max_rate":5"#), Ok(adaptive(5)));
    assert!(matches!(
        join(r#","mode":"all""#),
        Ok(Command::Join {
            mode: Mode::All,
            ..
        })
    ));
    for bad in [
        r#","mode":"some""#,
        r#","mode":"adaptive","max_rate":0"#,
        r#","mode":"adaptive","max_rate":1001"#,
        r#","mode":"adaptive","max_rate":"5""#,
        r#","max_rate":5"#,
        r#","mode":7"#,
    ] {
        let e = join(bad).expect_err(bad);
        assert_eq!((e.id, e.code), (Some(1), ErrorCode::BadRequest), "{bad}");
    }
    // Encoded as a client sends it: v1 joins unchanged.
    assert_eq!(
        adaptive(5).encode(),
        r#"{"type":"join","id":1,"room":"r","mode":"adaptive","max_rate":5}"#
    );
    let plain = Command::Join {
        id: 1,
        room: room("r"),
        since: None,
        mode: Mode::All,
    };
    assert_eq!(plain.encode(), r#"{"type":"join","id":1,"room":"r"}"#);
}
