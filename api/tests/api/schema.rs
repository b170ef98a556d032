//! The SDL is the contract clients build on: any change shows up here for review.

#[test]
fn the_schema_is_what_clients_expect() {
    insta::assert_snapshot!("schema", api::graphql::sdl());
}
