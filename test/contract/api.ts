import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import formats from 'ajv-formats';

// ajv-formats is CommonJS: its function is the module's default export's default.
const addFormats = formats as unknown as { default: (ajv: Ajv2020) => void };

/**
 * The API contract as the test suite holds the server to it: every answer a test receives through
 * helpers.call() is checked against the OpenAPI document the server serves (its /openapi.json): the status
 * must be one the operation declares, the body must match that status's schema, and an error's code must be
 * one of the operation's `x-error-codes`. A route the document does not describe (health, metrics) is not
 * checked; nor is a path no route serves (its 404 not_found is the framework's).
 */

type Schema = Record<string, unknown>;
interface Operation {
  operationId: string;
  responses: Record<string, { content?: Record<string, { schema: Schema }> }>;
  'x-error-codes'?: string[];
}
export type ApiDocument = {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema> };
};

export class ApiContract {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true });
  private readonly routes: Array<{ method: string; pattern: RegExp; template: string; operation: Operation }> = [];
  private readonly validators = new Map<string, ValidateFunction>();

  constructor(private readonly document: ApiDocument) {
    addFormats.default(this.ajv);
    this.ajv.addSchema(document as unknown as Schema, 'openapi.json');
    for (const [template, operations] of Object.entries(document.paths)) {
      // Each {param} is one percent-encoded segment; the trailing slash is optional, as the server's router has it.
      const pattern = new RegExp(
        `^${template
          .replace(/[.]/g, '\\.')
          .replace(/\{[^}]+\}/g, '[^/]+')
          .replace(/\/$/, '')}/?$`,
      );
      for (const [method, operation] of Object.entries(operations))
        this.routes.push({ method: method.toUpperCase(), pattern, template, operation });
    }
    // As the server's router: a static path (/api/associate/link-token/) before a parametric one (/api/associate/{provider}/).
    this.routes.sort((a, b) => (a.template.match(/\{/g)?.length ?? 0) - (b.template.match(/\{/g)?.length ?? 0));
  }

  /** Why this answer breaks the contract, or undefined when it keeps it. */
  violation(method: string, url: string, status: number, body: unknown): string | undefined {
    const path = new URL(url, 'http://api').pathname;
    const route = this.routes.find(
      (candidate) => candidate.method === method.toUpperCase() && candidate.pattern.test(path),
    );
    if (!route) return undefined;
    const where = `${route.operation.operationId} (${method} ${route.template}) answered ${status}`;
    const response = route.operation.responses[String(status)];
    if (!response)
      return `${where}, a status the document does not declare (${Object.keys(route.operation.responses).join(', ')})`;
    const media = response.content?.['application/json'];
    if (!media)
      return body === undefined || body === '' ? undefined : `${where} with a body the document does not declare`;
    const validate = this.validator(route.template, method.toLowerCase(), String(status));
    if (!validate(body))
      return `${where} with a body that does not match its schema: ${this.ajv.errorsText(validate.errors)}\n  body: ${JSON.stringify(body).slice(0, 400)}`;
    if (status >= 400) {
      const code = (body as { code?: string }).code;
      if (!route.operation['x-error-codes']?.includes(code ?? ''))
        return `${where} with code ${code}, which its x-error-codes do not list (${route.operation['x-error-codes']?.join(', ')})`;
    }
    return undefined;
  }

  private validator(template: string, method: string, status: string): ValidateFunction<unknown> {
    const key = `${method} ${template} ${status}`;
    const known = this.validators.get(key);
    if (known) return known;
    const pointer = ['paths', template, method, 'responses', status, 'content', 'application/json', 'schema']
      .map((part) => encodeURIComponent(part.replace(/~/g, '~0').replace(/\//g, '~1')))
      .join('/');
    const validate = this.ajv.compile({ $ref: `openapi.json#/${pointer}` });
    this.validators.set(key, validate);
    return validate;
  }
}
