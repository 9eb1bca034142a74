/** social-link as a library: the standalone server and the plugin for an existing Fastify app. (The provider emulator is its own package: @social-link/emulator.) */
export { buildApp, type AppOptions } from './server/app.js';
export { startServer } from './server/server.js';
export { loadConfig, type Config } from './config/config.js';
export { defineConfig, loadConfigFile, type ConfigFile } from './cli/config-file.js';
export { openDatabase, migrateToLatest } from './store/database.js';
export { socialLink, migrateSocialLink, type SocialLinkPluginOptions } from './embed.js';
export { defaultPipeline, authAllowed, socialUser, createUser, associateUser, loadExtraData } from './core/pipeline.js';
export type { PipelineStep, PipelineContext } from './core/pipeline-step.js';
export { ApiError, ERRORS, InvalidTokenError, ProviderUnavailableError, refuse, type ErrorCode } from './lib/errors.js';
export type { Provider, ProviderModule, SocialIdentity, TokenInput } from './providers/types.js';
