// Prometheus text format, read by the Prometheus project's own parser (the
// Python client's `text_string_to_metric_families`, Debian package
// python3-prometheus-client) rather than by a parser of ours.
import { spawnSync } from 'node:child_process';

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromFamily {
  name: string;
  type: string;
  help: string;
  samples: PromSample[];
}

const PARSE = `
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value if math.isfinite(s.value) else str(s.value)} for s in f.samples]})
print(json.dumps(out))
`;

/** Debian's python3 (not a pyenv one on PATH), where python3-prometheus-client installs. */
export const SYSTEM_PYTHON = '/usr/bin/python3';

/** Why the parser cannot run here, or null. */
export function prometheusParserUnavailable(): string | null {
  const r = spawnSync(SYSTEM_PYTHON, ['-c', 'import prometheus_client.parser'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error) return `${SYSTEM_PYTHON}: ${r.error.message}`;
  return r.status === 0 ? null : 'python3-prometheus-client is not installed — apt-get install python3-prometheus-client';
}

/** Parses exposition text; throws with the parser's message when it is not valid. */
export function parsePrometheus(text: string): PromFamily[] {
  const r = spawnSync(SYSTEM_PYTHON, ['-c', PARSE], { input: text, encoding: 'utf8', timeout: 30_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`Prometheus parser refused the text: ${r.stderr || r.error?.message}`);
  return JSON.parse(r.stdout) as PromFamily[];
}

/** The value of one sample of `family` whose labels include `labels`; undefined when absent. */
export function sampleValue(families: PromFamily[], name: string, labels: Record<string, string> = {}): number | undefined {
  for (const f of families) {
    for (const s of f.samples) {
      if (s.name !== name) continue;
      if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value;
    }
  }
  return undefined;
}
