// Server frames to the inbox modules: each frame type has one handler, registered by the module
// that owns what the frame changes (docs/protocol.md lists the frames).
const handlers = new Map(); // frame type -> fn(frame)

/** Handle frames of `type` with `fn(frame)`; a type has one handler. */
export function handle(type, fn) {
  if (handlers.has(type)) throw new Error(`frame ${type} already has a handler`);
  handlers.set(type, fn);
}

/** The WeiyuClient's onFrame: run the handler of the frame's type (unknown types are ignored). */
export function dispatch(f) {
  const fn = handlers.get(f.type);
  if (fn) fn(f);
}
