//! The SDL is the contract clients build on: any change shows up here for review.

#[test]
fn the_schema_is_what_clients_expect() {
    insta::assert_snapshot!("schema", api::graphql::sdl());
}

/// `silence_check` → `SILENCE_CHECK`: how a kind is spelled in GraphQL and the web app.
fn upper(kind: &str) -> String {
    kind.to_ascii_uppercase()
}

/// The kinds the workers run (`workflows::jobs::KINDS`, the one list) are exactly the API's
/// `JobKind` values and the web app's `JOB_KINDS`, in the same order.
#[test]
fn every_kind_is_known_to_the_workers_the_api_and_the_web_app() {
    let kinds: Vec<String> = workflows::jobs::KINDS.iter().map(|k| upper(k)).collect();

    for kind in workflows::jobs::KINDS {
        let parsed = api::graphql::jobs::JobKind::parse(kind)
            .unwrap_or_else(|| panic!("the API has no JobKind for {kind}"));
        assert_eq!(parsed.name(), kind);
    }
    let sdl = api::graphql::sdl();
    let body = sdl
        .split("enum JobKind {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("enum JobKind in the SDL");
    let in_api: Vec<String> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_owned)
        .collect();
    assert_eq!(in_api, kinds, "the API's JobKind");

    let web = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../frontend/src/app/core/jobs.ts"
    ))
    .expect("the web app's jobs.ts");
    let list = web
        .split("export const JOB_KINDS: JobKind[] = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("JOB_KINDS in jobs.ts");
    let in_web: Vec<String> = list
        .split(',')
        .map(|k| k.trim().trim_matches('\'').to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(in_web, kinds, "the web app's JOB_KINDS");
}
