// Ids the tests give the `openauto` group. A file can be handed to a group only by root or, for a group it is
// in, by its owner: as root the tests use a group nobody has (4242); as anyone else, their own primary group.
export const IS_ROOT = process.getuid?.() === 0;
export const OPENAUTO_GID = IS_ROOT ? 4242 : (process.getgid?.() ?? 4242);
