import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Eta } from 'eta';
import type { FastifyReply } from 'fastify';
import type { StaffContext } from '../core/staff.js';
import { factRows } from './facts.js';

/**
 * The console's pages: eta templates in src/admin/views, escaped by default. Found from src/admin/ and from the
 * build's dist/admin/ alike: the templates and the stylesheet are not compiled, so both read them from src/.
 */
const ADMIN_DIR = fileURLToPath(new URL('../../src/admin/', import.meta.url));

/** Sends a page: the template `view` with `data`, and what the layout shows of the signed-in staff member. */
export type Render = (
  reply: FastifyReply,
  view: string,
  data: Record<string, unknown>,
  context?: StaffContext,
  status?: number,
) => FastifyReply;

/** The renderer of the console's pages; the layout's menu lists `providers`. */
export function pageRenderer(providers: readonly string[]): Render {
  const eta = new Eta({ views: `${ADMIN_DIR}views`, cache: true, autoEscape: true });
  return (reply, view, data, context, status = 200) =>
    reply
      .code(status)
      .type('text/html; charset=utf-8')
      .send(
        eta.render(`./${view}`, {
          staff: context?.staff,
          csrf: context?.session.csrfToken,
          providers,
          section: '',
          factRows,
          ...data,
        }),
      );
}

/** The console's stylesheet, read once. */
export const consoleCss = (): Buffer => readFileSync(`${ADMIN_DIR}static/console.css`);
