// Generated from client/openapi.json by `npm run build:client` (openapi-typescript): do not edit.

export interface paths {
    "/api/users/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Create a user
         * @description An empty body makes a guest user (a phone at first launch); {username, password} makes a password user (both or neither). Usernames are unique whatever their case.
         */
        post: operations["createUser"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/token/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Sign in with username and password
         * @description Any case of the username signs in. Every failure answers the same 401 invalid_credentials.
         */
        post: operations["signInWithPassword"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/token/refresh/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Exchange a refresh token for a new pair
         * @description Refresh tokens are single use. Presenting a used one again revokes its whole session.
         */
        post: operations["refreshToken"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/logout/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * End the session of this access token
         * @description Its access and refresh tokens stop working at once.
         */
        post: operations["logout"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/me/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The signed-in user and its linked social accounts */
        get: operations["getMe"];
        put?: never;
        post?: never;
        /**
         * Delete the signed-in user
         * @description Removes the user, its links and sessions at once; provider tokens kept for a link (Apple) are revoked.
         */
        delete: operations["deleteMe"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/audit/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * The signed-in user's security history
         * @description Links, unlinks, sign-ins, refused attempts, revoked sessions: newest first. Page with ?before=<id>.
         */
        get: operations["listAuditEvents"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/.well-known/jwks.json": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Public keys that verify our access tokens
         * @description For a backend that verifies our access tokens itself. Cached for 5 minutes.
         */
        get: operations["getJwks"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/nonce/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * A single-use nonce for the provider SDK
         * @description Give it to the SDK as the sign-in request's nonce (Apple: its SHA-256 in hex, as Apple asks), then send it back as `nonce` with the ID token. It is good for one sign-in or link within expires_in seconds. SOCIAL_AUTH_<P>_REQUIRE_NONCE=issued accepts no other nonce.
         */
        post: operations["createNonce"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/associate/{provider}/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Link a social account to the signed-in user
         * @description Idempotent: linking the same account to the same user again answers 200 with created=false.
         */
        post: operations["linkProvider"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/associate/link-token/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Link the account a 409 link_required answer proposed, to the signed-in user
         * @description After `auth` answered 409 link_required (an unknown account whose verified e-mail is a user's), the person signs in with one of its `providers`; this then links the proposed account to them, without asking its provider again. The token is single use, good for link_token_expires_in seconds, and only for the user it was issued for.
         */
        post: operations["linkWithToken"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/users/merge/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Merge this guest into the user whose social account it proved, and sign in as that user
         * @description After linking answered 409 already_associated with a merge_token (the signed-in user is a guest: no password, no linked account): signs in as the owner of that social account, deletes this user, and emits user.merged {from, into} so that the app's backend moves its data. The token is single use, good for merge_token_expires_in seconds, and only with this user's session.
         */
        post: operations["mergeIntoOwner"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/auth/{provider}/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Sign in with a linked social account (account takeover on a new phone)
         * @description Answers the linked user with a new session, or 404 user_not_found. With SOCIAL_AUTH_CREATE_USER=true an unknown account gets a new user (201). An unknown account whose provider verified an e-mail that a user's link also verified answers 409 link_required instead (SOCIAL_AUTH_EMAIL_LINKING): sign in with one of `providers`, then POST /api/associate/link-token/.
         */
        post: operations["signInWithProvider"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/associations/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The signed-in user's linked social accounts */
        get: operations["listLinks"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/associations/{provider}/{uid}/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        post?: never;
        /**
         * Unlink a social account
         * @description Refused (409 last_login_method) when it is the last way a user without a password can sign in.
         */
        delete: operations["unlinkProvider"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        /** @description Every error: a stable machine-readable code and a human message (also as `errors`). */
        Error: {
            /**
             * @description What went wrong, for programs: one of a closed list (the operator's own pipeline steps may add codes: they are listed here too)
             * @enum {string}
             */
            code: "invalid_request" | "invalid_token" | "bad_request" | "not_authenticated" | "invalid_access_token" | "invalid_credentials" | "invalid_service_key" | "forbidden" | "user_disabled" | "reason_required" | "invalid_refresh_token" | "refresh_token_reused" | "user_not_found" | "unknown_provider" | "association_not_found" | "session_not_found" | "not_found" | "deletion_request_not_found" | "username_taken" | "already_associated" | "link_required" | "invalid_claims" | "invalid_merge_token" | "invalid_link_token" | "last_login_method" | "payload_too_large" | "unsupported_media_type" | "rate_limited" | "internal_error" | "provider_unavailable" | "database_unavailable" | "hook_refused" | "hook_unavailable" | "rate_limit_unavailable";
            message: string;
            /** @description The message, under the original design's name */
            errors: string;
            /** @description Why, when known (never a secret) */
            detail?: string;
            /** @description Seconds to wait (rate_limited, provider_unavailable, database_unavailable, rate_limit_unavailable), also in the Retry-After header */
            retry_after?: number;
            /** @description Also in the X-Request-Id header and in every log line of the request */
            request_id?: string;
            /** @description link_required: the providers that prove the user who has this verified e-mail; sign in with one of them, then link with link_token */
            providers?: string[];
            /** @description link_required: single use; POST /api/associate/link-token/ with it once signed in with one of `providers` */
            link_token?: string;
            /** @description link_required: seconds the link token is good for */
            link_token_expires_in?: number;
            /** @description already_associated, to a user without a password: POST /api/users/merge/ with it signs in as the account's owner and merges this user into it */
            merge_token?: string;
            /** @description already_associated: seconds the merge token is good for */
            merge_token_expires_in?: number;
            /** @description hook_refused: the app's own code for the refusal, as its blocking hook answered it (the message is the hook's too) */
            reason?: string;
        };
        TokenResponse: {
            id: number;
            username: string;
            /** @description ES256 JWT; verify with /.well-known/jwks.json */
            access_token: string;
            /** @description Opaque; single use (rotated by POST /api/token/refresh/) */
            refresh_token: string;
            /** @enum {string} */
            token_type: "Bearer";
            /** @description Seconds until the access token expires */
            expires_in: number;
        };
        Association: {
            provider: string;
            uid: string;
            extra_data: {
                [key: string]: unknown;
            };
            /** Format: date-time */
            created_at: string;
            /** Format: date-time */
            updated_at: string;
        };
        /** @description The public keys that verify our access tokens (RFC 7517): the `kid` of a token's header names its key */
        Jwks: {
            keys: {
                kty: string;
                crv?: string;
                x?: string;
                y?: string;
                kid: string;
                alg?: string;
                use?: string;
            }[];
        };
    };
    responses: never;
    parameters: never;
    requestBodies: never;
    headers: never;
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    createUser: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: {
            content: {
                /**
                 * @example {
                 *       "username": "ada",
                 *       "password": "correct horse battery staple"
                 *     }
                 */
                "application/json": {
                    username?: string;
                    password?: string;
                };
            };
        };
        responses: {
            /** @description The new user, signed in */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "id": 42,
                     *       "username": "ada",
                     *       "access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6ImIyZjBjOWQ0IiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsInNpZCI6IjZjMmQiLCJpc3MiOiJzb2NpYWwtbGluayJ9.c2lnbmF0dXJl",
                     *       "refresh_token": "p9N3vV0m2Q8xJ1r6bYt4wK7zL5aH0sFd3gE2cB9uR1o",
                     *       "token_type": "Bearer",
                     *       "expires_in": 900
                     *     }
                     */
                    "application/json": components["schemas"]["TokenResponse"];
                };
            };
            /** @description `invalid_request` */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `username_taken` */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `payload_too_large` */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `unsupported_media_type` */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `rate_limited` */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `database_unavailable`, `rate_limit_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    signInWithPassword: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                /**
                 * @example {
                 *       "username": "ada",
                 *       "password": "correct horse battery staple"
                 *     }
                 */
                "application/json": {
                    username: string;
                    password: string;
                };
            };
        };
        responses: {
            /** @description Signed in: a new session */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "id": 42,
                     *       "username": "ada",
                     *       "access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6ImIyZjBjOWQ0IiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsInNpZCI6IjZjMmQiLCJpc3MiOiJzb2NpYWwtbGluayJ9.c2lnbmF0dXJl",
                     *       "refresh_token": "p9N3vV0m2Q8xJ1r6bYt4wK7zL5aH0sFd3gE2cB9uR1o",
                     *       "token_type": "Bearer",
                     *       "expires_in": 900
                     *     }
                     */
                    "application/json": components["schemas"]["TokenResponse"];
                };
            };
            /** @description `invalid_request` */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `invalid_credentials` */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `user_disabled` */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `payload_too_large` */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `unsupported_media_type` */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `rate_limited` */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `database_unavailable`, `rate_limit_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    refreshToken: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                /**
                 * @example {
                 *       "refresh_token": "p9N3vV0m2Q8xJ1r6bYt4wK7zL5aH0sFd3gE2cB9uR1o"
                 *     }
                 */
                "application/json": {
                    refresh_token: string;
                };
            };
        };
        responses: {
            /** @description A new pair in the same session */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "id": 42,
                     *       "username": "ada",
                     *       "access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6ImIyZjBjOWQ0IiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsInNpZCI6IjZjMmQiLCJpc3MiOiJzb2NpYWwtbGluayJ9.c2lnbmF0dXJl",
                     *       "refresh_token": "p9N3vV0m2Q8xJ1r6bYt4wK7zL5aH0sFd3gE2cB9uR1o",
                     *       "token_type": "Bearer",
                     *       "expires_in": 900
                     *     }
                     */
                    "application/json": components["schemas"]["TokenResponse"];
                };
            };
            /** @description `invalid_request` */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `invalid_refresh_token`, `refresh_token_reused` */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `user_disabled` */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `payload_too_large` */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `unsupported_media_type` */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `rate_limited` */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `database_unavailable`, `rate_limit_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    logout: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Done */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description `not_authenticated`, `invalid_access_token` */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `database_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    getMe: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The signed-in user */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "id": 42,
                     *       "username": "guest_5f2b9c1d0e7a4b36",
                     *       "has_password": false,
                     *       "date_joined": "2026-11-30T08:15:00.000Z",
                     *       "last_login": "2026-12-01T09:02:11.000Z",
                     *       "associations": [
                     *         {
                     *           "provider": "facebook",
                     *           "uid": "10150000000000001",
                     *           "extra_data": {
                     *             "id": "10150000000000001",
                     *             "name": "Ada Lovelace",
                     *             "email": "ada@example.com",
                     *             "expires_at": 1767225600
                     *           },
                     *           "created_at": "2026-11-30T08:16:02.000Z",
                     *           "updated_at": "2026-12-01T09:02:11.000Z"
                     *         }
                     *       ],
                     *       "claims": {
                     *         "role": "editor",
                     *         "plan": "pro"
                     *       }
                     *     }
                     */
                    "application/json": {
                        id: number;
                        username: string;
                        has_password: boolean;
                        /** Format: date-time */
                        date_joined: string;
                        /** Format: date-time */
                        last_login: string | null;
                        associations: components["schemas"]["Association"][];
                        /** @description The custom claims this session's next access token carries: the user's own as they are now (set by an operator), and those its sign-in added (a blocking hook, a pipeline step) over them; {}: none */
                        claims: {
                            [key: string]: unknown;
                        };
                    };
                };
            };
            /** @description `not_authenticated`, `invalid_access_token` */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `database_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    deleteMe: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Done */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description `not_authenticated`, `invalid_access_token` */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `database_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    listAuditEvents: {
        parameters: {
            query?: {
                before?: string;
                /** @description 1 to 200, default 50 */
                limit?: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Security events, newest first */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example [
                     *       {
                     *         "id": 1207,
                     *         "event": "link_refused_other_user",
                     *         "provider": "facebook",
                     *         "uid": "10150000000000001",
                     *         "detail": "another user tried to link this account",
                     *         "ip": "203.0.113.7",
                     *         "user_agent": "MyApp/2.1 (iPhone)",
                     *         "created_at": "2026-12-01T09:00:00.000Z"
                     *       },
                     *       {
                     *         "id": 1190,
                     *         "event": "associated",
                     *         "provider": "facebook",
                     *         "uid": "10150000000000001",
                     *         "detail": null,
                     *         "ip": "198.51.100.4",
                     *         "user_agent": "MyApp/2.1 (Android)",
                     *         "created_at": "2026-11-30T08:16:02.000Z"
                     *       }
                     *     ]
                     */
                    "application/json": {
                        id: number;
                        event: string;
                        provider: string | null;
                        uid: string | null;
                        detail: string | null;
                        ip: string | null;
                        user_agent: string | null;
                        /** Format: date-time */
                        created_at: string;
                    }[];
                };
            };
            /** @description `invalid_request` */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `not_authenticated`, `invalid_access_token` */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `database_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    getJwks: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The public JWK set */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "keys": [
                     *         {
                     *           "kty": "EC",
                     *           "crv": "P-256",
                     *           "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                     *           "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                     *           "kid": "b2f0c9d4",
                     *           "alg": "ES256",
                     *           "use": "sig"
                     *         }
                     *       ]
                     *     }
                     */
                    "application/json": components["schemas"]["Jwks"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `database_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    createNonce: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description A nonce, good for one sign-in or link */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "nonce": "sln_Jm3kP0qV7xW2bY9tR4eL1sN8dA6cF5gH",
                     *       "expires_in": 600
                     *     }
                     */
                    "application/json": {
                        nonce: string;
                        expires_in: number;
                    };
                };
            };
            /** @description `rate_limited` */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `database_unavailable`, `rate_limit_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    linkProvider: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                provider: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                /**
                 * @example {
                 *       "access_token": "EAAGm0PX4ZCpsBAKZCZD"
                 *     }
                 */
                "application/json": {
                    /** @description OAuth 2 access token, or OAuth 1.0a token (Twitter) */
                    access_token?: string;
                    /** @description OAuth 1.0a token secret (Twitter) */
                    access_token_secret?: string;
                    /** @description OpenID Connect ID token */
                    id_token?: string;
                    /** @description The raw nonce the app generated for the sign-in */
                    nonce?: string;
                    /** @description Authorization code (Sign in with Apple) */
                    code?: string;
                    /** @description Sign in with Apple: the bundle or services id a `code` sent alone was issued to, when several are configured */
                    client_id?: string;
                    /** @description Sign in with Apple's web flow (Android): the redirect URI the authorization used, one of SOCIAL_AUTH_APPLE_REDIRECT_URIS for its Services ID. Without it, the first one configured for that Services ID is used */
                    redirect_uri?: string;
                    /** @description Sign in with Apple: the `user` JSON Apple gives the app on the first authorization only (or its text, as a web form post carries it). Kept for display; never used for identity */
                    user?: string | {
                        name?: {
                            firstName?: string;
                            lastName?: string;
                        };
                        email?: string;
                    };
                };
            };
        };
        responses: {
            /** @description Linked (or linked already to this user) */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "success": true,
                     *       "association": {
                     *         "provider": "facebook",
                     *         "uid": "10150000000000001",
                     *         "created": true
                     *       }
                     *     }
                     */
                    "application/json": {
                        success: boolean;
                        association: {
                            provider: string;
                            uid: string;
                            /** @description false when this account was linked to this user already */
                            created: boolean;
                        };
                    };
                };
            };
            /** @description `invalid_request`, `invalid_token` */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `not_authenticated`, `invalid_access_token` */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `user_disabled`, `hook_refused` */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `unknown_provider` */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `already_associated` */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `payload_too_large` */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `unsupported_media_type` */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `rate_limited` */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `provider_unavailable` */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `provider_unavailable`, `hook_unavailable`, `database_unavailable`, `rate_limit_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    linkWithToken: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                /**
                 * @example {
                 *       "link_token": "slk_q8Zr2mVx0bLk4TjN7wPc1sYe5HdA9fGu3oKi6RnBtEw"
                 *     }
                 */
                "application/json": {
                    /** @description The link_token of a 409 link_required answer */
                    link_token: string;
                };
            };
        };
        responses: {
            /** @description Linked (or linked already to this user) */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "success": true,
                     *       "association": {
                     *         "provider": "apple",
                     *         "uid": "001234.5e201aec537347aeb79d23cbc345170a.1321",
                     *         "created": true
                     *       }
                     *     }
                     */
                    "application/json": {
                        success: boolean;
                        association: {
                            provider: string;
                            uid: string;
                            /** @description false when this account was linked to this user already */
                            created: boolean;
                        };
                    };
                };
            };
            /** @description `invalid_link_token`, `invalid_request` */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `not_authenticated`, `invalid_access_token` */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `user_disabled`, `hook_refused` */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `unknown_provider` */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `already_associated` */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `payload_too_large` */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `unsupported_media_type` */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `rate_limited` */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `hook_unavailable`, `database_unavailable`, `rate_limit_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    mergeIntoOwner: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                /**
                 * @example {
                 *       "merge_token": "slm_Q2x0ZXJuYXRpdmVNZXJnZVRva2VuRXhhbXBsZQ"
                 *     }
                 */
                "application/json": {
                    /** @description The merge_token of a 409 already_associated answer */
                    merge_token: string;
                };
            };
        };
        responses: {
            /** @description Signed in as the owner; this user is gone */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "id": 42,
                     *       "username": "ada",
                     *       "access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6ImIyZjBjOWQ0IiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsInNpZCI6IjZjMmQiLCJpc3MiOiJzb2NpYWwtbGluayJ9.c2lnbmF0dXJl",
                     *       "refresh_token": "p9N3vV0m2Q8xJ1r6bYt4wK7zL5aH0sFd3gE2cB9uR1o",
                     *       "token_type": "Bearer",
                     *       "expires_in": 900
                     *     }
                     */
                    "application/json": components["schemas"]["TokenResponse"];
                };
            };
            /** @description `invalid_merge_token`, `invalid_request` */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `not_authenticated`, `invalid_access_token` */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `user_disabled`, `hook_refused` */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `payload_too_large` */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `unsupported_media_type` */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `rate_limited` */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `hook_unavailable`, `database_unavailable`, `rate_limit_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    signInWithProvider: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                provider: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                /**
                 * @example {
                 *       "id_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiIxMTAxNjkxMDAwMDAwMDAwMDAwMDEifQ.c2ln",
                 *       "nonce": "sln_Jm3kP0qV7xW2bY9tR4eL1sN8dA6cF5gH"
                 *     }
                 */
                "application/json": {
                    /** @description OAuth 2 access token, or OAuth 1.0a token (Twitter) */
                    access_token?: string;
                    /** @description OAuth 1.0a token secret (Twitter) */
                    access_token_secret?: string;
                    /** @description OpenID Connect ID token */
                    id_token?: string;
                    /** @description The raw nonce the app generated for the sign-in */
                    nonce?: string;
                    /** @description Authorization code (Sign in with Apple) */
                    code?: string;
                    /** @description Sign in with Apple: the bundle or services id a `code` sent alone was issued to, when several are configured */
                    client_id?: string;
                    /** @description Sign in with Apple's web flow (Android): the redirect URI the authorization used, one of SOCIAL_AUTH_APPLE_REDIRECT_URIS for its Services ID. Without it, the first one configured for that Services ID is used */
                    redirect_uri?: string;
                    /** @description Sign in with Apple: the `user` JSON Apple gives the app on the first authorization only (or its text, as a web form post carries it). Kept for display; never used for identity */
                    user?: string | {
                        name?: {
                            firstName?: string;
                            lastName?: string;
                        };
                        email?: string;
                    };
                };
            };
        };
        responses: {
            /** @description The linked user, signed in */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "id": 42,
                     *       "username": "ada",
                     *       "access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6ImIyZjBjOWQ0IiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsInNpZCI6IjZjMmQiLCJpc3MiOiJzb2NpYWwtbGluayJ9.c2lnbmF0dXJl",
                     *       "refresh_token": "p9N3vV0m2Q8xJ1r6bYt4wK7zL5aH0sFd3gE2cB9uR1o",
                     *       "token_type": "Bearer",
                     *       "expires_in": 900
                     *     }
                     */
                    "application/json": components["schemas"]["TokenResponse"];
                };
            };
            /** @description A new user for an unknown account (SOCIAL_AUTH_CREATE_USER=true), signed in */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "id": 42,
                     *       "username": "ada",
                     *       "access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6ImIyZjBjOWQ0IiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsInNpZCI6IjZjMmQiLCJpc3MiOiJzb2NpYWwtbGluayJ9.c2lnbmF0dXJl",
                     *       "refresh_token": "p9N3vV0m2Q8xJ1r6bYt4wK7zL5aH0sFd3gE2cB9uR1o",
                     *       "token_type": "Bearer",
                     *       "expires_in": 900
                     *     }
                     */
                    "application/json": components["schemas"]["TokenResponse"];
                };
            };
            /** @description `invalid_request`, `invalid_token` */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `user_disabled`, `hook_refused` */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `unknown_provider`, `user_not_found` */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `link_required` */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `payload_too_large` */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `unsupported_media_type` */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `rate_limited` */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `provider_unavailable` */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `provider_unavailable`, `hook_unavailable`, `database_unavailable`, `rate_limit_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    listLinks: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The linked accounts, oldest first */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example [
                     *       {
                     *         "provider": "facebook",
                     *         "uid": "10150000000000001",
                     *         "extra_data": {
                     *           "id": "10150000000000001",
                     *           "name": "Ada Lovelace",
                     *           "email": "ada@example.com",
                     *           "expires_at": 1767225600
                     *         },
                     *         "created_at": "2026-11-30T08:16:02.000Z",
                     *         "updated_at": "2026-12-01T09:02:11.000Z"
                     *       }
                     *     ]
                     */
                    "application/json": components["schemas"]["Association"][];
                };
            };
            /** @description `not_authenticated`, `invalid_access_token` */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `database_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
    unlinkProvider: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                provider: string;
                uid: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Unlinked */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description `invalid_request` */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `not_authenticated`, `invalid_access_token` */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `association_not_found` */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `last_login_method` */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `internal_error` */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
            /** @description `database_unavailable` */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Error"];
                };
            };
        };
    };
}
