use super::*;

const DEPTH: &str = r#"{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,"s":"BTCUSDT","U":50093239189,"u":50093239202,"b":[["61737.63000000","0.00000000"],["61730.17000000","1.5"]],"a":[["61837.64000000","1.54698000"]]}}"#;
const FUT_DEPTH: &str = r#"{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1723161256299,"T":1723161256298,"s":"BTCUSDT","U":5123107832006,"u":5123107837557,"pu":5123107831937,"b":[["58710.20","0.014"]],"a":[]}}"#;
const TICKER: &str = r#"{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}"#;
const TRADE: &str = r#"{"stream":"btcusd_perp@trade","data":{"e":"trade","E":1723161257687,"T":1723161257679,"s":"BTCUSD_PERP","t":849714402,"p":"61804.8","q":"4","X":"MARKET","m":false}}"#;
const SNAP: &str = r#"{"lastUpdateId":50093239218,"bids":[["61837.63000000","3.78826000"]],"asks":[["61837.64000000","0.1"],["61838","2"]]}"#;

#[test]
fn wire_numbers_are_exact() {
    assert_eq!(parse_wire("61737.63000000"), Some(6_173_763_000_000));
    assert_eq!(parse_wire("0.014"), Some(1_400_000));
    assert_eq!(parse_wire("4"), Some(400_000_000));
    assert_eq!(parse_wire("1.0000000000"), Some(100_000_000));
    for bad in [
        "",
        ".",
        "-1",
        "1e5",
        "1.000000001",
        "nan",
        "1.2.3",
        "99999999999999999999",
    ] {
        assert_eq!(parse_wire(bad), None, "{bad}");
    }
}

#[test]
fn decodes_every_stream_kind() {
    let mut d = BinanceDecoder::with_capacity(8);
    assert_eq!(
        d.decode(DEPTH).unwrap(),
        BinanceMsg::Depth {
            symbol: "BTCUSDT",
            event_ms: 1723161255208,
            first_id: 50093239189,
            final_id: 50093239202,
            prev_final_id: None
        }
    );
    assert_eq!(
        d.bids(),
        &[(6_173_763_000_000, 0), (6_173_017_000_000, 150_000_000)]
    );
    assert_eq!(d.asks(), &[(6_183_764_000_000, 154_698_000)]);
    assert!(matches!(
        d.decode(FUT_DEPTH).unwrap(),
        BinanceMsg::Depth {
            prev_final_id: Some(5123107831937),
            ..
        }
    ));
    assert!(d.asks().is_empty());
    assert_eq!(
        d.decode(TICKER).unwrap(),
        BinanceMsg::BookTicker {
            symbol: "BTCUSDT",
            update_id: 50093239212,
            event_ms: None,
            bid: 6_183_763_000_000,
            bid_qty: 378_826_000,
            ask: 6_183_764_000_000,
            ask_qty: 154_698_000
        }
    );
    assert_eq!(
        d.decode(TRADE).unwrap(),
        BinanceMsg::Trade {
            symbol: "BTCUSD_PERP",
            trade_ms: 1723161257679,
            trade_id: 849714402,
            price: 6_180_480_000_000,
            qty: 400_000_000,
            buyer_is_maker: false
        }
    );
    assert_eq!(
        d.decode(SNAP).unwrap(),
        BinanceMsg::Snapshot {
            last_update_id: 50093239218
        }
    );
    assert_eq!(d.asks().len(), 2);
}

#[test]
fn key_order_whitespace_and_unknown_fields_do_not_matter() {
    let mut d = BinanceDecoder::default();
    let shuffled = r#" { "data" : { "m" : true , "q":"1", "x": {"nested": [1, {"a": null}, "s"]}, "p":"2.5", "t":7, "T":3, "s":"ABC" } , "stream" : "abc@trade" } "#;
    assert_eq!(
        d.decode(shuffled).unwrap(),
        BinanceMsg::Trade {
            symbol: "ABC",
            trade_ms: 3,
            trade_id: 7,
            price: 250_000_000,
            qty: 100_000_000,
            buyer_is_maker: true
        }
    );
}

#[test]
fn bad_messages_are_errors() {
    let mut d = BinanceDecoder::default();
    for bad in [
        "",
        "{",
        "[]",
        r#"{"stream":"btcusdt@kline_1m","data":{}}"#,
        r#"{"stream":"btcusdt@trade","data":{"s":"X","T":1,"t":1,"p":"-1","q":"1","m":true}}"#,
        r#"{"stream":"btcusdt@trade","data":{"s":"X","T":1,"t":1,"p":"NaN","q":"1","m":true}}"#,
        r#"{"stream":"btcusdt@trade","data":{"s":"X","T":1,"t":1,"q":"1","m":true}}"#,
        r#"{"stream":"btcusdt@depth","data":{"s":"X","E":1,"U":1,"u":2,"b":[["1"]],"a":[]}}"#,
        r#"{"lastUpdateId":"x","bids":[],"asks":[]}"#,
        r#"{"stream":"btcusdt@trade","data":{"s":"X\"Y","T":1,"t":1,"p":"1","q":"1","m":true}}"#,
        r#"{"stream":"btcusdt@trade","data":{"s":"X","T":1.5,"t":1,"p":"1","q":"1","m":true}}"#,
        r#"{"stream":"btcusdt@trade","data":{"s":"X","T":1,"t":1,"p":"1","q":"1","m":true}} trailing"#,
        r#"{"stream":"btcusdt@trade"}"#,
    ] {
        assert!(d.decode(bad).is_err(), "{bad}");
    }
}

#[test]
fn buffers_are_reused_without_growing() {
    let mut d = BinanceDecoder::with_capacity(8);
    let (cb, ca) = (d.bids.capacity(), d.asks.capacity());
    for _ in 0..1000 {
        d.decode(DEPTH).unwrap();
    }
    assert_eq!((d.bids.capacity(), d.asks.capacity()), (cb, ca));
}

proptest::proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(s in ".{0,300}") {
        let _ = BinanceDecoder::default().decode(&s);
    }

    #[test]
    fn wire_parse_matches_the_core_decimal_parser(int in 0u64..10_000_000_000, frac in 0u32..100_000_000) {
        let text = format!("{int}.{frac:08}");
        proptest::prop_assert_eq!(parse_wire(&text), hft_core::Price::parse(&text, 8).ok().map(|p| p.raw()));
    }
}
