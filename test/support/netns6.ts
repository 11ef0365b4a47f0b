/**
 * IPv6 on top of the standard two-peer topology (netns.ts createTopology,
 * whose namespaces come up with IPv6 off): IPv6 switched on inside both
 * namespaces with duplicate address detection off (a tentative address
 * cannot be bound, and DAD would hold every address for a second), ULA
 * addresses in fd00:<index>::/32 only, on the veth link (outer) and on lo
 * (inner), and IPv6 routes and pings. Touches only namespaces the harness
 * created (exec checks that).
 */
import { parsePingSummary } from '../../demo/netns.js';
import { exec, execChecked } from './netns.js';
import type { NetNs, Topology } from './netns.js';
import type { PingResult } from './netns.js';

/** The IPv6 addresses of a topology. */
export interface Topology6 {
  /** Outer addresses on links[0] (eth0): fd00:<index>:1::1 (left) and fd00:<index>:1::2 (right). */
  readonly leftOuter: string;
  readonly rightOuter: string;
  /** Inner addresses on lo: fd00:<index>:50::1 (left), fd00:<index>:100::1 (right). */
  readonly leftInner: string;
  readonly rightInner: string;
  /** fd00:<index>:50::/64 and fd00:<index>:100::/64. */
  readonly leftInnerNet: string;
  readonly rightInnerNet: string;
}

const ULA_RE = /^fd00:[0-9a-f]{1,4}(:[0-9a-f]{0,4}){0,6}(\/\d{1,3})?$/;

function checkUla(address: string): void {
  if (typeof address !== 'string' || !ULA_RE.test(address)) throw new TypeError(`harness IPv6 addresses must be in fd00::/16 (fd00:<index>:...), got ${JSON.stringify(address)}`);
}

/** Switch IPv6 on inside `ns`, DAD off first so that no address is ever tentative. */
export async function enableIpv6(ns: NetNs): Promise<void> {
  await execChecked(ns, 'sysctl', ['-q', '-w', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
  await execChecked(ns, 'sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=0', 'net.ipv6.conf.default.disable_ipv6=0', 'net.ipv6.conf.lo.disable_ipv6=0']);
  const links = await execChecked(ns, 'ip', ['-o', 'link', 'show']);
  for (const m of links.stdout.matchAll(/^\d+: ([A-Za-z0-9_.-]+)[@:]/gm)) {
    const dev = m[1]!;
    if (dev === 'lo') continue;
    await execChecked(ns, 'sysctl', ['-q', '-w', `net.ipv6.conf.${dev}.accept_dad=0`, `net.ipv6.conf.${dev}.disable_ipv6=0`]);
  }
}

/** An IPv6 address with prefix on `dev` (default lo), without DAD. */
export async function addAddress6(ns: NetNs, cidr: string, dev = 'lo'): Promise<void> {
  checkUla(cidr);
  await execChecked(ns, 'ip', ['-6', 'addr', 'add', cidr, 'dev', dev, 'nodad']);
}

/** An IPv6 route through a device, from a source address, e.g. into a TUN device. */
export async function addRoute6(ns: NetNs, dst: string, via: { dev: string; src?: string }): Promise<void> {
  checkUla(dst);
  if (via.src !== undefined) checkUla(via.src);
  await execChecked(ns, 'ip', ['-6', 'route', 'add', dst, 'dev', via.dev, ...(via.src ? ['src', via.src] : [])]);
}

/** IPv6 on both namespaces of `topo`, outer addresses on eth0 and inner ones on lo. */
export async function addIpv6(topo: Topology): Promise<Topology6> {
  const p = `fd00:${topo.index.toString(16)}`;
  const t: Topology6 = {
    leftOuter: `${p}:1::1`,
    rightOuter: `${p}:1::2`,
    leftInner: `${p}:50::1`,
    rightInner: `${p}:100::1`,
    leftInnerNet: `${p}:50::/64`,
    rightInnerNet: `${p}:100::/64`,
  };
  await enableIpv6(topo.left);
  await enableIpv6(topo.right);
  await addAddress6(topo.left, `${t.leftOuter}/64`, topo.links[0]!.aIf);
  await addAddress6(topo.right, `${t.rightOuter}/64`, topo.links[0]!.bIf);
  await addAddress6(topo.left, `${t.leftInner}/64`);
  await addAddress6(topo.right, `${t.rightInner}/64`);
  return t;
}

/** ping -6 from inside `ns` (bounded like netns.ts ping). */
export async function ping6(ns: NetNs, dst: string, opts: { count?: number; intervalS?: number; waitS?: number; src?: string } = {}): Promise<PingResult> {
  checkUla(dst);
  const count = opts.count ?? 1;
  const intervalS = opts.intervalS ?? 0.2;
  const waitS = opts.waitS ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > 10_000) throw new RangeError('ping6: count must be 1..10000');
  if (!(intervalS >= 0.002) || !(waitS > 0)) throw new RangeError('ping6: intervalS >= 0.002 and waitS > 0 required');
  const args = ['-6', '-n', '-q', '-c', String(count), '-i', String(intervalS), '-W', String(waitS)];
  if (opts.src !== undefined) {
    checkUla(opts.src);
    args.push('-I', opts.src);
  }
  args.push(dst);
  const result = await exec(ns, 'ping', args, { timeoutMs: Math.ceil((count * intervalS + waitS) * 1000) + 5000 });
  const { sent, received } = parsePingSummary(result.stdout);
  return { sent, received, result };
}
