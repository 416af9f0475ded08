// mesh-distroless-proxy: where asked (meshHardening.requireDistrolessProxy), the injected
// istio-proxy must run Istio's distroless image (tag suffix -distroless: no shell, no package
// manager; what values.global.variant=distroless or sidecar.istio.io/proxyImageType: distroless
// select). An image pinned by digest alone cannot be told apart and counts as not distroless.
import { skip, type ValidatingRule, type Violation } from '../core/types.ts';
import { at, mapItems, show } from './lib/json-read.ts';
import { annotationsOf } from '../core/objects.ts';
import { PROXY, STATUS } from './lib/injector.ts';

/** The tag of an image reference (after the last ':' that follows the last '/'), without a digest. */
export function imageTag(image: string): string {
  const noDigest = image.split('@')[0] ?? '';
  const last = noDigest.slice(noDigest.lastIndexOf('/') + 1);
  const i = last.lastIndexOf(':');
  return i < 0 ? '' : last.slice(i + 1);
}

export const meshDistrolessProxy: ValidatingRule = {
  id: 'mesh-distroless-proxy',
  type: 'validating',
  title: 'Where required, the injected istio-proxy must use the distroless image',
  fix: 'install Istio with values.global.variant=distroless (or annotate the pod template sidecar.istio.io/proxyImageType: distroless)',
  match: { kinds: [{ group: '', kind: 'Pod' }], operations: ['CREATE'] },
  webhook: [{ apiGroup: '', apiVersions: ['v1'], resources: ['pods'] }],
  validate({ request: req, config }) {
    if (!config.meshHardening.requireDistrolessProxy) return skip('meshHardening.requireDistrolessProxy is off');
    const status = annotationsOf(req.object)[STATUS];
    if (typeof status !== 'string' || status === '') return skip('the pod was not injected by Istio');
    const out: Violation[] = [];
    for (const list of ['containers', 'initContainers'] as const) {
      for (const [i, c] of mapItems(at(req.object, 'spec', list))) {
        if (c['name'] !== PROXY) continue;
        const image = typeof c['image'] === 'string' ? c['image'] : '';
        if (imageTag(image).endsWith('-distroless')) continue;
        out.push({ message: `istio-proxy runs ${show(image)}, not the distroless proxy image (tag suffix -distroless)`, path: `spec.${list}[${i}].image`, value: image });
      }
    }
    return out;
  },
};
