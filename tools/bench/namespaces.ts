// The benchmark's namespaces: names, labels, and which of them are sidecar-injected.

export function namespaceName(i: number): string {
  return `bench-${String(i).padStart(5, '0')}`;
}

/** Labels of bench namespace i: 8 in 10 sidecar-injected, 1 ambient, 1 not meshed; a team label. */
export function namespaceLabels(i: number): Record<string, string> {
  const mesh: Record<string, string> = i % 10 === 8 ? { 'istio.io/dataplane-mode': 'ambient' } : i % 10 === 9 ? {} : { 'istio-injection': 'enabled' };
  return { ...mesh, team: `team-${i % 97}`, 'app.kubernetes.io/managed-by': 'argocd' };
}

/** Sidecar-injected namespaces among the first `n` (the requests' namespaces). */
export function injectedNamespaces(n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) if (i % 10 < 8) out.push(namespaceName(i));
  return out;
}
