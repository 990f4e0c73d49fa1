//! Proptest strategies for moq-transport values in the canonical form each
//! draft can express, so `decode(encode(x)) == x` holds exactly.
#![allow(dead_code)]

use bytes::Bytes;
use moq_proto::ietf::{params as p, *};
use proptest::{collection::vec, option, prelude::*};

pub(crate) fn version() -> impl Strategy<Value = Version> {
    prop::sample::select(Version::ALL.to_vec())
}

/// Any integer the draft's varint carries.
pub(crate) fn varint(v: Version) -> BoxedStrategy<u64> {
    let max = coding::max_varint(v);
    prop_oneof![0..64u64, 0..20_000u64, 0..=max].boxed()
}

/// A small integer, for fields added to others (no overflow).
pub(crate) fn small() -> impl Strategy<Value = u64> {
    prop_oneof![0..64u64, 0..(1u64 << 40)]
}

pub(crate) fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

pub(crate) fn text(max: usize) -> impl Strategy<Value = String> {
    prop::string::string_regex(&format!("\\PC{{0,{max}}}")).unwrap()
}

pub(crate) fn namespace() -> impl Strategy<Value = Namespace> {
    vec(text(8), 0..4).prop_map(|fields| Namespace { fields })
}

pub(crate) fn nonempty_namespace() -> impl Strategy<Value = Namespace> {
    vec(text(8), 1..4).prop_map(|fields| Namespace { fields })
}

pub(crate) fn location(v: Version) -> impl Strategy<Value = Location> {
    (varint(v), varint(v)).prop_map(|(group, object)| Location { group, object })
}

pub(crate) fn group_order() -> impl Strategy<Value = GroupOrder> {
    prop::sample::select(vec![
        GroupOrder::Publisher,
        GroupOrder::Ascending,
        GroupOrder::Descending,
    ])
}

/// A filter in the form `v` writes (the inline form for draft-14).
pub(crate) fn filter(v: Version) -> BoxedStrategy<Filter> {
    let start = || (small(), small()).prop_map(|(group, object)| Location { group, object });
    let ranged = (start(), small()).prop_map(|(start, delta)| Filter::Absolute {
        start,
        end: Some(FilterEnd {
            group: start.group + delta,
            object: None,
        }),
    });
    let open = start().prop_map(|start| Filter::Absolute { start, end: None });
    if v.has_typed_filter() || v.has_filter_fields() {
        let bounded = (start(), small(), small()).prop_map(|(start, delta, object)| Filter::Absolute {
            start,
            end: Some(FilterEnd {
                group: start.group + delta,
                object: Some(object),
            }),
        });
        // The field list spells an open absolute start at {0, 0} as "everything".
        let fields = v.has_filter_fields();
        let open = open.prop_filter("{0,0} is Unfiltered in draft-20/21", move |f| {
            !fields
                || !matches!(
                    f,
                    Filter::Absolute {
                        start: Location { group: 0, object: 0 },
                        end: None
                    }
                )
        });
        prop_oneof![
            Just(Filter::Unfiltered),
            Just(Filter::NextObject),
            small().prop_map(Filter::Relative),
            open,
            ranged,
            bounded,
        ]
        .boxed()
    } else {
        prop_oneof![Just(Filter::NextObject), Just(Filter::Relative(0)), open, ranged].boxed()
    }
}

/// Message parameters valid in `v`, leaving out `lifted` (carried as fields).
pub(crate) fn params(v: Version, lifted: &'static [u64]) -> BoxedStrategy<Parameters> {
    let mut choices: Vec<BoxedStrategy<(u64, Value)>> = vec![
        varint(v)
            .prop_map(|x| (p::DELIVERY_TIMEOUT, Value::Varint(x)))
            .boxed(),
        bytes(12)
            .prop_map(|b| (p::AUTHORIZATION_TOKEN, Value::Bytes(b)))
            .boxed(),
        varint(v)
            .prop_map(|x| (p::MAX_CACHE_DURATION, Value::Varint(x)))
            .boxed(),
        varint(v).prop_map(|x| (p::HIDDEN, Value::Varint(x))).boxed(),
    ];
    if v >= Version::Draft15 {
        choices.push(
            varint(v)
                .prop_map(|x| (p::NEW_GROUP_REQUEST, Value::Varint(x)))
                .boxed(),
        );
        choices.push(varint(v).prop_map(|x| (p::EXPIRES, Value::Varint(x))).boxed());
        choices.push(
            location(v)
                .prop_map(|l| (p::LARGEST_OBJECT, Value::Location(l)))
                .boxed(),
        );
        choices.push(any::<bool>().prop_map(|b| (p::FORWARD, Value::Bool(b))).boxed());
        choices.push(
            any::<u8>()
                .prop_map(|x| (p::SUBSCRIBER_PRIORITY, Value::U8(x)))
                .boxed(),
        );
        choices.push(
            group_order()
                .prop_map(|o| (p::GROUP_ORDER, Value::Order(o)))
                .boxed(),
        );
        choices.push(filter(v).prop_map(|f| (p::FILTER, Value::Filter(f))).boxed());
    }
    if v.has_typed_parameters() {
        choices.push(bytes(12).prop_map(|b| (p::HOP_PATH, Value::Bytes(b))).boxed());
        choices.push(varint(v).prop_map(|x| (p::ROUTE_COST, Value::Varint(x))).boxed());
    } else {
        // Types no draft defines: kept by parity before draft-17.
        choices.push(varint(v).prop_map(|x| (0x1000, Value::Varint(x))).boxed());
        choices.push(bytes(8).prop_map(|b| (0x1001, Value::Bytes(b))).boxed());
    }
    if v >= Version::Draft18 {
        choices.push(
            varint(v)
                .prop_map(|x| (p::SUBGROUP_DELIVERY_TIMEOUT, Value::Varint(x)))
                .boxed(),
        );
        choices.push(
            namespace()
                .prop_map(|n| (p::TRACK_NAMESPACE_PREFIX, Value::Namespace(n)))
                .boxed(),
        );
    }
    if v >= Version::Draft19 {
        choices.push(
            bytes(8)
                .prop_map(|b| (p::SUBGROUP_FILTER, Value::Bytes(b)))
                .boxed(),
        );
    }
    if v >= Version::Draft20 {
        choices.push(
            any::<bool>()
                .prop_map(|b| (p::INCLUDE_PROPERTIES, Value::Bool(b)))
                .boxed(),
        );
    }
    let one = prop::strategy::Union::new(choices);
    vec(one, 0..5)
        .prop_map(move |entries| {
            let mut params = Parameters::new();
            for (key, value) in entries {
                if lifted.contains(&key) {
                    continue;
                }
                // Only tokens and range filters may repeat.
                if key == p::AUTHORIZATION_TOKEN || key == p::SUBGROUP_FILTER {
                    params.push(key, value);
                } else {
                    params.set(key, value);
                }
            }
            params
        })
        .boxed()
}

pub(crate) fn kv_pairs(v: Version) -> BoxedStrategy<KeyValuePairs> {
    let pair = prop_oneof![
        (0..50u64, varint(v)).prop_map(|(k, x)| (k * 2, KvValue::Varint(x))),
        (0..50u64, bytes(8)).prop_map(|(k, b)| (k * 2 + 1, KvValue::Bytes(b))),
    ];
    vec(pair, 0..4)
        .prop_map(|pairs| {
            let mut kv = KeyValuePairs::new();
            for (key, value) in pairs {
                kv.push(key, value).unwrap();
            }
            kv
        })
        .boxed()
}

pub(crate) fn properties(v: Version) -> BoxedStrategy<TrackProperties> {
    match v.has_track_properties() {
        true => kv_pairs(v),
        false => Just(TrackProperties::new()).boxed(),
    }
}

fn when<T: std::fmt::Debug + Clone + 'static>(
    cond: bool,
    s: impl Strategy<Value = T> + 'static,
    default: T,
) -> BoxedStrategy<T> {
    match cond {
        true => s.boxed(),
        false => Just(default).boxed(),
    }
}

/// A field that draft-14 requires and later drafts make optional.
fn required<T: std::fmt::Debug + Clone + 'static>(
    v: Version,
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    match v.has_parameterized_requests() {
        true => option::of(s).boxed(),
        false => s.prop_map(Some).boxed(),
    }
}

fn response_id(v: Version) -> BoxedStrategy<u64> {
    when(v.has_response_request_id(), varint(v), 0)
}

fn required_delta(v: Version) -> BoxedStrategy<u64> {
    when(v.has_required_request_id(), varint(v), 0)
}

pub(crate) fn setup_options(v: Version) -> BoxedStrategy<SetupOptions> {
    let other = prop_oneof![
        varint(v).prop_map(|x| (setup::OPTION_HOP_ID, KvValue::Varint(x))),
        varint(v).prop_map(|x| (setup::OPTION_SOLICIT, KvValue::Varint(x))),
        bytes(8).prop_map(|b| (0x21u64, KvValue::Bytes(b))),
    ];
    (
        option::of(text(20)),
        when(!v.has_unified_setup(), option::of(varint(v)), None),
        option::of(bytes(16)),
        option::of(varint(v)),
        option::of(text(20)),
        option::of(bytes(16)),
        vec(other, 0..3),
    )
        .prop_map(
            |(path, max_request_id, token, cache, authority, implementation, other)| {
                // Unknown options may repeat, but moq-net refuses a repeated
                // extension option it defines, so keep one of each here.
                let mut kv = KeyValuePairs::new();
                for (key, value) in other {
                    kv.set(key, value).unwrap();
                }
                SetupOptions {
                    path,
                    max_request_id,
                    authorization_token: token,
                    max_auth_token_cache_size: cache,
                    authority,
                    implementation,
                    other: kv,
                }
            },
        )
        .boxed()
}

pub(crate) fn request_error(v: Version) -> BoxedStrategy<RequestError> {
    (
        response_id(v),
        varint(v),
        when(v.has_retry_interval(), varint(v), 0),
        text(40),
    )
        .prop_map(|(request_id, code, retry_interval, reason)| RequestError {
            request_id,
            code,
            retry_interval,
            reason,
        })
        .boxed()
}

const SUBSCRIBE_LIFTED: &[u64] = &[p::FORWARD, p::SUBSCRIBER_PRIORITY, p::FILTER, p::GROUP_ORDER];
const SUBSCRIBE_OK_LIFTED: &[u64] = &[p::EXPIRES, p::LARGEST_OBJECT, p::GROUP_ORDER];
const UPDATE_LIFTED: &[u64] = &[p::FORWARD, p::SUBSCRIBER_PRIORITY, p::FILTER];
const PUBLISH_LIFTED: &[u64] = &[p::LARGEST_OBJECT, p::FORWARD, p::GROUP_ORDER];
const FETCH_LIFTED: &[u64] = &[p::SUBSCRIBER_PRIORITY, p::GROUP_ORDER, p::FILTER];

pub(crate) fn subscribe(v: Version) -> BoxedStrategy<Subscribe> {
    (
        varint(v),
        required_delta(v),
        namespace(),
        text(16),
        required(v, any::<u8>()),
        required(v, group_order()),
        required(v, any::<bool>()),
        required(v, filter(v)),
        params(v, SUBSCRIBE_LIFTED),
    )
        .prop_map(
            |(
                request_id,
                required_request_id_delta,
                namespace,
                name,
                priority,
                group_order,
                forward,
                filter,
                params,
            )| {
                Subscribe {
                    request_id,
                    required_request_id_delta,
                    namespace,
                    name,
                    priority,
                    group_order,
                    forward,
                    filter,
                    params,
                }
            },
        )
        .boxed()
}

pub(crate) fn subscribe_ok(v: Version) -> BoxedStrategy<SubscribeOk> {
    let expires = match v.has_parameterized_requests() {
        true => option::of(varint(v)).boxed(),
        // draft-14 writes "never expires" as 0, which reads back as None.
        false => option::of(varint(v).prop_filter("0 is None", |e| *e != 0)).boxed(),
    };
    (
        response_id(v),
        varint(v),
        expires,
        required(v, group_order()),
        option::of(location(v)),
        params(v, SUBSCRIBE_OK_LIFTED),
        properties(v),
    )
        .prop_map(
            |(request_id, track_alias, expires, group_order, largest, params, properties)| SubscribeOk {
                request_id,
                track_alias,
                expires,
                group_order,
                largest,
                params,
                properties,
            },
        )
        .boxed()
}

pub(crate) fn request_update(v: Version) -> BoxedStrategy<RequestUpdate> {
    let d14 = !v.has_parameterized_requests();
    (
        varint(v),
        when(v.has_response_request_id(), varint(v), 0),
        required_delta(v),
        when(d14, location(v).prop_map(Some), None),
        when(d14, varint(v).prop_map(Some), None),
        required(v, any::<u8>()),
        required(v, any::<bool>()),
        when(!d14, option::of(filter(v)), None),
        params(v, UPDATE_LIFTED),
    )
        .prop_map(
            |(
                request_id,
                existing_request_id,
                required_request_id_delta,
                start,
                end_group,
                priority,
                forward,
                filter,
                params,
            )| {
                RequestUpdate {
                    request_id,
                    existing_request_id,
                    required_request_id_delta,
                    start,
                    end_group,
                    priority,
                    forward,
                    filter,
                    params,
                }
            },
        )
        .boxed()
}

pub(crate) fn publish_done(v: Version) -> BoxedStrategy<PublishDone> {
    (response_id(v), varint(v), varint(v), text(40))
        .prop_map(|(request_id, status, stream_count, reason)| PublishDone {
            request_id,
            status,
            stream_count,
            reason,
        })
        .boxed()
}

pub(crate) fn publish(v: Version) -> BoxedStrategy<Publish> {
    (
        varint(v),
        required_delta(v),
        namespace(),
        text(16),
        varint(v),
        required(v, group_order()),
        option::of(location(v)),
        required(v, any::<bool>()),
        params(v, PUBLISH_LIFTED),
        properties(v),
    )
        .prop_map(
            |(
                request_id,
                required_request_id_delta,
                namespace,
                name,
                track_alias,
                group_order,
                largest,
                forward,
                params,
                properties,
            )| {
                Publish {
                    request_id,
                    required_request_id_delta,
                    namespace,
                    name,
                    track_alias,
                    group_order,
                    largest,
                    forward,
                    params,
                    properties,
                }
            },
        )
        .boxed()
}

pub(crate) fn publish_ok(v: Version) -> BoxedStrategy<PublishOk> {
    (
        response_id(v),
        required(v, any::<bool>()),
        required(v, any::<u8>()),
        required(v, group_order()),
        required(v, filter(v)),
        params(v, SUBSCRIBE_LIFTED),
    )
        .prop_map(
            |(request_id, forward, priority, group_order, filter, params)| PublishOk {
                request_id,
                forward,
                priority,
                group_order,
                filter,
                params,
            },
        )
        .boxed()
}

pub(crate) fn fetch(v: Version) -> BoxedStrategy<Fetch> {
    let kind = if v.has_filtered_fetch() {
        (namespace(), text(16))
            .prop_map(|(namespace, name)| FetchKind::Track { namespace, name })
            .boxed()
    } else {
        prop_oneof![
            (namespace(), text(16), location(v), location(v)).prop_map(|(namespace, name, start, end)| {
                FetchKind::Standalone {
                    namespace,
                    name,
                    start,
                    end,
                }
            }),
            (varint(v), varint(v)).prop_map(|(joining_request_id, offset)| FetchKind::RelativeJoining {
                joining_request_id,
                offset
            }),
            (varint(v), varint(v)).prop_map(|(joining_request_id, group)| FetchKind::AbsoluteJoining {
                joining_request_id,
                group
            }),
        ]
        .boxed()
    };
    (
        varint(v),
        required_delta(v),
        required(v, any::<u8>()),
        required(v, group_order()),
        kind,
        when(v.has_filtered_fetch(), option::of(filter(v)), None),
        params(v, FETCH_LIFTED),
    )
        .prop_map(
            |(request_id, required_request_id_delta, priority, group_order, kind, filter, params)| Fetch {
                request_id,
                required_request_id_delta,
                priority,
                group_order,
                kind,
                filter,
                params,
            },
        )
        .boxed()
}

pub(crate) fn fetch_ok(v: Version) -> BoxedStrategy<FetchOk> {
    (
        response_id(v),
        required(v, group_order()),
        any::<bool>(),
        location(v),
        params(v, &[p::GROUP_ORDER]),
        properties(v),
    )
        .prop_map(
            |(request_id, group_order, end_of_track, end, params, properties)| FetchOk {
                request_id,
                group_order,
                end_of_track,
                end,
                params,
                properties,
            },
        )
        .boxed()
}

fn done_target(v: Version) -> BoxedStrategy<RequestTarget> {
    match v.has_namespace_done_by_request() {
        true => varint(v).prop_map(RequestTarget::Request).boxed(),
        false => namespace().prop_map(RequestTarget::Namespace).boxed(),
    }
}

pub(crate) fn subscribe_namespace(v: Version) -> BoxedStrategy<SubscribeNamespace> {
    (
        varint(v),
        required_delta(v),
        namespace(),
        when(v.has_subscribe_options(), varint(v), 0),
        params(v, &[]),
    )
        .prop_map(
            |(request_id, required_request_id_delta, prefix, options, params)| SubscribeNamespace {
                request_id,
                required_request_id_delta,
                prefix,
                options,
                params,
            },
        )
        .boxed()
}

/// Every control message the draft defines.
pub(crate) fn message(v: Version) -> BoxedStrategy<Message> {
    use Message as M;
    let rid = || varint(v).prop_map(RequestId);
    let mut all: Vec<BoxedStrategy<Message>> = vec![
        (
            text(40),
            when(v.has_goaway_timeout(), varint(v), 0),
            when(v.has_goaway_request_id(), option::of(varint(v)), None),
        )
            .prop_map(|(uri, timeout, request_id)| {
                M::GoAway(GoAway {
                    uri,
                    timeout,
                    request_id,
                })
            })
            .boxed(),
        subscribe(v).prop_map(M::Subscribe).boxed(),
        subscribe(v).prop_map(M::TrackStatus).boxed(),
        subscribe_ok(v).prop_map(M::SubscribeOk).boxed(),
        request_update(v).prop_map(M::RequestUpdate).boxed(),
        publish_done(v).prop_map(M::PublishDone).boxed(),
        publish(v).prop_map(M::Publish).boxed(),
        fetch(v).prop_map(M::Fetch).boxed(),
        fetch_ok(v).prop_map(M::FetchOk).boxed(),
        (varint(v), required_delta(v), namespace(), params(v, &[]))
            .prop_map(|(request_id, required_request_id_delta, namespace, params)| {
                M::PublishNamespace(PublishNamespace {
                    request_id,
                    required_request_id_delta,
                    namespace,
                    params,
                })
            })
            .boxed(),
        subscribe_namespace(v).prop_map(M::SubscribeNamespace).boxed(),
    ];
    if v.has_unified_setup() {
        all.push(
            setup_options(v)
                .prop_map(|options| M::Setup(Setup { options }))
                .boxed(),
        );
    } else {
        let versions = when(v.has_setup_versions(), vec(varint(v), 0..4), vec![]);
        all.push(
            (versions, setup_options(v))
                .prop_map(|(versions, options)| M::ClientSetup(ClientSetup { versions, options }))
                .boxed(),
        );
        let version = when(v.has_setup_versions(), varint(v).prop_map(Some), None);
        all.push(
            (version, setup_options(v))
                .prop_map(|(version, options)| M::ServerSetup(ServerSetup { version, options }))
                .boxed(),
        );
    }
    if v.has_control_stream_requests() {
        all.push(rid().prop_map(M::MaxRequestId).boxed());
        all.push(rid().prop_map(M::RequestsBlocked).boxed());
        all.push(rid().prop_map(M::Unsubscribe).boxed());
        all.push(rid().prop_map(M::FetchCancel).boxed());
        all.push(
            done_target(v)
                .prop_map(|target| M::PublishNamespaceDone(PublishNamespaceDone { target }))
                .boxed(),
        );
        all.push(
            (done_target(v), varint(v), text(40))
                .prop_map(|(target, code, reason)| {
                    M::PublishNamespaceCancel(PublishNamespaceCancel { target, code, reason })
                })
                .boxed(),
        );
    }
    if v.has_request_ok() {
        all.push(request_error(v).prop_map(M::RequestError).boxed());
        all.push(
            (
                response_id(v),
                params(v, &[]),
                when(v.has_request_ok_properties(), kv_pairs(v), KeyValuePairs::new()),
            )
                .prop_map(|(request_id, params, properties)| {
                    M::RequestOk(RequestOk {
                        request_id,
                        params,
                        properties,
                    })
                })
                .boxed(),
        );
    } else {
        all.push(request_error(v).prop_map(M::SubscribeError).boxed());
        all.push(request_error(v).prop_map(M::PublishError).boxed());
        all.push(request_error(v).prop_map(M::FetchError).boxed());
        all.push(request_error(v).prop_map(M::TrackStatusError).boxed());
        all.push(request_error(v).prop_map(M::PublishNamespaceError).boxed());
        all.push(request_error(v).prop_map(M::SubscribeNamespaceError).boxed());
        all.push(rid().prop_map(M::PublishNamespaceOk).boxed());
        all.push(rid().prop_map(M::SubscribeNamespaceOk).boxed());
        all.push(subscribe_ok(v).prop_map(M::TrackStatusOk).boxed());
    }
    if v.has_publish_ok() {
        all.push(publish_ok(v).prop_map(M::PublishOk).boxed());
    }
    if v <= Version::Draft15 {
        let target = match v.has_setup_versions() {
            true => prop_oneof![
                varint(v).prop_map(RequestTarget::Request),
                nonempty_namespace().prop_map(RequestTarget::Namespace),
            ]
            .boxed(),
            false => varint(v).prop_map(RequestTarget::Request).boxed(),
        };
        all.push(
            target
                .prop_map(|target| M::UnsubscribeNamespace(UnsubscribeNamespace { target }))
                .boxed(),
        );
    }
    if v.has_namespace_messages() {
        all.push(
            (namespace(), option::of(params(v, &[])))
                .prop_map(|(suffix, params)| M::Namespace(NamespaceActive { suffix, params }))
                .boxed(),
        );
        all.push(
            namespace()
                .prop_map(|suffix| M::NamespaceDone(NamespaceDone { suffix }))
                .boxed(),
        );
    }
    if v.has_subscribe_tracks() {
        all.push(subscribe_namespace(v).prop_map(M::SubscribeTracks).boxed());
    }
    if v >= Version::Draft17 {
        all.push(
            (namespace(), text(16))
                .prop_map(|(suffix, name)| M::PublishBlocked(PublishBlocked { suffix, name }))
                .boxed(),
        );
    }
    // A type this draft does not define stays framed.
    all.push(
        (
            prop_oneof![Just(0x60u64), Just(0x3fu64), Just(0x1cu64)],
            bytes(20),
        )
            .prop_map(|(kind, body)| M::Unknown { kind, body })
            .boxed(),
    );
    prop::strategy::Union::new(all).boxed()
}

pub(crate) fn subgroup_header(v: Version) -> BoxedStrategy<SubgroupHeader> {
    let subgroup = prop_oneof![
        Just(SubgroupId::Zero),
        Just(SubgroupId::FirstObject),
        varint(v).prop_map(SubgroupId::Explicit),
    ];
    (
        varint(v),
        varint(v),
        subgroup,
        match v.has_default_priority() {
            true => option::of(any::<u8>()).boxed(),
            false => any::<u8>().prop_map(Some).boxed(),
        },
        any::<bool>(),
        any::<bool>(),
        when(v.has_first_object_bit(), any::<bool>(), true),
    )
        .prop_map(
            |(track_alias, group, subgroup, priority, properties, end_of_group, first_object)| {
                SubgroupHeader {
                    track_alias,
                    group,
                    subgroup,
                    priority,
                    properties,
                    end_of_group,
                    first_object,
                }
            },
        )
        .boxed()
}

pub(crate) fn subgroup_object(v: Version, has_properties: bool) -> BoxedStrategy<SubgroupObject> {
    (
        varint(v),
        when(has_properties, bytes(16).prop_map(Some), None),
        prop_oneof![Just(0u64), 0..=moq_proto::limits::MAX_FRAME_SIZE],
        varint(v),
    )
        .prop_map(|(id_delta, properties, size, status)| SubgroupObject {
            id_delta,
            properties,
            size,
            status: if size == 0 { status } else { 0 },
        })
        .boxed()
}

pub(crate) fn fetch_object(v: Version) -> BoxedStrategy<FetchObject> {
    let size = prop_oneof![Just(0u64), 0..=moq_proto::limits::MAX_FRAME_SIZE];
    let status = when(v.has_fetch_status(), varint(v), 0);
    if !v.has_serialization_flags() {
        return (
            varint(v),
            varint(v),
            varint(v),
            any::<u8>(),
            bytes(12),
            size,
            status,
        )
            .prop_map(
                |(group, subgroup, object, priority, props, size, status)| FetchObject::Object {
                    group: Some(group),
                    subgroup: FetchSubgroup::Explicit(subgroup),
                    object: Some(object),
                    priority: Some(priority),
                    properties: Some(props),
                    size,
                    status: if size == 0 { status } else { 0 },
                },
            )
            .boxed();
    }
    let subgroup = prop_oneof![
        Just(FetchSubgroup::Zero),
        Just(FetchSubgroup::Prior),
        Just(FetchSubgroup::PriorPlusOne),
        varint(v).prop_map(FetchSubgroup::Explicit),
        Just(FetchSubgroup::Datagram),
    ];
    let object = (
        option::of(varint(v)),
        subgroup,
        option::of(varint(v)),
        option::of(any::<u8>()),
        option::of(bytes(12)),
        size,
        status,
    )
        .prop_map(
            |(group, subgroup, object, priority, properties, size, status)| FetchObject::Object {
                group,
                subgroup,
                object,
                priority,
                properties,
                size,
                status: if size == 0 { status } else { 0 },
            },
        );
    let end = (
        prop::sample::select(vec![
            EndOfRange::NonExistent,
            EndOfRange::Unknown,
            EndOfRange::TimedOut,
        ]),
        varint(v),
        varint(v),
    )
        .prop_map(|(reason, group, object)| FetchObject::EndOfRange {
            reason,
            group,
            object,
        });
    prop_oneof![4 => object, 1 => end].boxed()
}

pub(crate) fn datagram(v: Version) -> BoxedStrategy<ObjectDatagram> {
    let status_body = varint(v).prop_map(DatagramBody::Status);
    let payload = bytes(64).prop_map(DatagramBody::Payload);
    (
        varint(v),
        varint(v),
        option::of(varint(v)),
        match v.has_default_priority() {
            true => option::of(any::<u8>()).boxed(),
            false => any::<u8>().prop_map(Some).boxed(),
        },
        any::<bool>(),
        option::of(vec(any::<u8>(), 1..12).prop_map(Bytes::from)),
        prop_oneof![payload, status_body],
    )
        .prop_map(
            move |(track_alias, group, object, priority, end_of_group, properties, body)| {
                let status = matches!(body, DatagramBody::Status(_));
                let mut d = ObjectDatagram {
                    track_alias,
                    group,
                    object,
                    priority,
                    end_of_group: end_of_group && !status,
                    properties,
                    body,
                };
                // draft-14's status types (0x20, 0x21) always carry the Object ID.
                if status && !v.has_default_priority() && d.object.is_none() {
                    d.object = Some(0);
                }
                // draft-17+: only a normal object carries properties.
                if matches!(d.body, DatagramBody::Status(s) if s != 0) && v.leading_ones_varint() {
                    d.properties = None;
                }
                d
            },
        )
        .boxed()
}

pub(crate) fn uni_stream(v: Version) -> BoxedStrategy<UniStream> {
    let mut all = vec![
        subgroup_header(v).prop_map(UniStream::Subgroup).boxed(),
        varint(v)
            .prop_map(|request_id| UniStream::Fetch(FetchHeader { request_id }))
            .boxed(),
    ];
    if v.has_unified_setup() {
        all.push(
            setup_options(v)
                .prop_map(|options| UniStream::Setup(Setup { options }))
                .boxed(),
        );
    }
    if v.has_padding_stream() {
        all.push(Just(UniStream::Padding).boxed());
    }
    prop::strategy::Union::new(all).boxed()
}
