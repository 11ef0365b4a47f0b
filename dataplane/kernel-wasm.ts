// The slice of the WebAssembly JS API that the ESP kernel wrapper uses, typed
// locally: the project compiles against lib ES2023 without DOM, and @types/node
// does not declare the WebAssembly namespace. Types only: a compiled module
// may be shared by threads, an instance belongs to the worker that made it
// (kernel.ts, architecture §4.1).

/** A compiled module: immutable, may be posted to worker threads. */
export interface WasmModule {
  readonly __wasmModule?: never;
}

export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

export interface WasmGlobal {
  readonly value: unknown;
}

export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}

interface WasmApi {
  compile(bytes: Uint8Array): Promise<WasmModule>;
  instantiate(module: WasmModule, imports: object): Promise<WasmInstance>;
  Instance: new (module: WasmModule, imports: object) => WasmInstance;
  Global: abstract new (...args: never[]) => WasmGlobal;
}

/** The runtime's WebAssembly object. */
export const Wasm: WasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
