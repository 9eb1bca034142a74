import type { LinkView, UserView } from '../core/admin.js';
import type { ErrorCode } from '../lib/errors.js';
import type { UserSummary } from '../store/directory.js';
import type { AuditEvent } from '../store/storage.js';
import { integer, dateTime, nullable, text } from '../http/schemas.js';

/**
 * What the admin API (/admin/api/, api.ts) answers: the JSON schemas of its document, and the bodies built from
 * core/admin.ts's views to fit them (snake_case, as the rest of the API).
 */
/** Every operation's security: a service key (`social-link keys service create`). */
export const serviceKey = [{ serviceKey: [] }];
/** What any call may answer, and any change. */
export const KEYED: ErrorCode[] = ['invalid_service_key', 'rate_limited'];
export const CHANGE: ErrorCode[] = [...KEYED, 'forbidden', 'reason_required', 'invalid_request', 'user_not_found'];

export const userSchema = {
  type: 'object',
  required: ['id', 'username', 'has_password', 'date_joined', 'last_login', 'disabled_at'],
  properties: {
    id: integer,
    username: text,
    has_password: { type: 'boolean' },
    date_joined: dateTime,
    last_login: nullable(dateTime),
    disabled_at: {
      ...nullable(dateTime),
      description: 'When an operator disabled the user (it cannot sign in); null: it can',
    },
    disabled_reason: { ...nullable(text), description: "The operator's reason (a user's detail only)" },
    providers: { type: 'array', items: text },
    name: { ...nullable(text), description: 'A name its providers gave (search results)' },
    email: { ...nullable(text), description: 'An e-mail its providers gave, a verified one first (search results)' },
    matched_by: { type: 'string', enum: ['id', 'uid', 'email', 'username'] },
    claims: {
      type: 'object',
      additionalProperties: true,
      description: "The user's custom claims, in each of its access tokens (a user's detail only; {}: none)",
    },
  },
} as const;
export const linkSchema = {
  type: 'object',
  required: ['id', 'user_id', 'provider', 'uid', 'extra_data', 'verified_email', 'created_at', 'updated_at'],
  properties: {
    id: integer,
    user_id: integer,
    provider: text,
    uid: text,
    extra_data: { type: 'object', additionalProperties: true },
    verified_email: nullable(text),
    created_at: dateTime,
    updated_at: dateTime,
  },
} as const;
const sessionSchema = {
  type: 'object',
  required: ['id', 'created_at', 'last_used_at', 'ip', 'user_agent'],
  properties: {
    id: text,
    created_at: dateTime,
    last_used_at: dateTime,
    ip: nullable(text),
    user_agent: nullable(text),
  },
} as const;
export const userDetail = {
  type: 'object',
  required: ['user', 'links', 'sessions'],
  properties: {
    user: userSchema,
    links: { type: 'array', items: linkSchema },
    sessions: { type: 'array', items: sessionSchema },
  },
} as const;
export const auditSchema = {
  type: 'object',
  required: ['id', 'event', 'provider', 'uid', 'detail', 'ip', 'user_agent', 'created_at', 'actor', 'reason'],
  properties: {
    id: integer,
    event: text,
    provider: nullable(text),
    uid: nullable(text),
    detail: nullable(text),
    ip: nullable(text),
    user_agent: nullable(text),
    created_at: dateTime,
    actor: nullable(text),
    reason: nullable(text),
  },
} as const;

export const userId = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^\\d{1,20}$' } },
} as const;
// Absent or blank, a change answers 400 reason_required (core/admin.ts decides, and audits the refusal).
export const reasonProperty = {
  type: 'string',
  maxLength: 500,
  description: 'Why: kept with the change in the audit log (required: 400 reason_required without it)',
} as const;
export const reasonBody = {
  type: 'object',
  properties: { reason: reasonProperty },
  additionalProperties: false,
} as const;
export const TAG = ['admin'];

export const userBody = (
  user: Pick<UserSummary, 'id' | 'username' | 'hasPassword' | 'createdAt' | 'lastLoginAt' | 'disabledAt'> &
    Partial<UserSummary> & { disabledReason?: string | null; claims?: Record<string, unknown> },
) => ({
  id: user.id,
  username: user.username,
  has_password: user.hasPassword,
  date_joined: user.createdAt,
  last_login: user.lastLoginAt,
  disabled_at: user.disabledAt,
  ...(user.disabledReason !== undefined ? { disabled_reason: user.disabledReason } : {}),
  ...(user.providers ? { providers: user.providers } : {}),
  ...(user.name !== undefined ? { name: user.name, email: user.email ?? null } : {}),
  ...(user.matchedBy ? { matched_by: user.matchedBy } : {}),
  ...(user.claims ? { claims: user.claims } : {}),
});
export const linkBody = (link: LinkView) => ({
  id: link.id,
  user_id: link.userId,
  provider: link.provider,
  uid: link.uid,
  extra_data: link.extraData,
  verified_email: link.verifiedEmail,
  created_at: link.createdAt,
  updated_at: link.updatedAt,
});
export const detailBody = (view: UserView) => ({
  user: userBody(view.user),
  links: view.links.map(linkBody),
  sessions: view.sessions.map((session) => ({
    id: session.id,
    created_at: session.createdAt,
    last_used_at: session.lastUsedAt,
    ip: session.ip,
    user_agent: session.userAgent,
  })),
});
export const auditBody = (event: AuditEvent) => ({
  ...event,
  user_agent: event.userAgent,
  created_at: event.createdAt,
});
