import { describe, expect, it } from 'vitest';
import { authorizationHeader, hmacSha1Signature, percentEncode, signatureBaseString } from './oauth1.js';
// The provider's side, as the emulator does it with the oauth-1.0a library: an independent check of our signer.
import { parseAuthorizationHeader, verifyRequestSignature } from '../../emulator/src/oauth1.js';

/**
 * Every expected value below is copied from a published source named next to it:
 * - RFC 5849, "The OAuth 1.0 Protocol" (section numbers as printed in the RFC);
 * - X/Twitter developer docs: "Creating a signature", "Authorizing a request" and
 *   "Percent encoding parameters" (revisions named where they differ);
 * - the OAuth community wiki page "TestCases" (wiki.oauth.net/w/page/TestCases).
 * Values the RFC prints percent-encoded inside a header are compared through decodeURIComponent
 * of the printed text, never retyped in decoded form.
 */

type Param = readonly [string, string];

/** Splits a base string into its three parts, each decoded once. */
function baseStringParts(baseString: string): string[] {
  const parts = baseString.split('&');
  expect(parts).toHaveLength(3);
  return parts.map(decodeURIComponent);
}

function parsed(header: string): Record<string, string> {
  const fields = parseAuthorizationHeader(header);
  if (fields === null) throw new Error(`not parsed: ${header}`);
  return fields;
}

describe('percentEncode', () => {
  it('matches the examples of X "Percent encoding parameters"', () => {
    expect(percentEncode('Ladies + Gentlemen')).toBe('Ladies%20%2B%20Gentlemen');
    expect(percentEncode('An encoded string!')).toBe('An%20encoded%20string%21');
    expect(percentEncode('Dogs, Cats & Mice')).toBe('Dogs%2C%20Cats%20%26%20Mice');
    expect(percentEncode('☃')).toBe('%E2%98%83');
  });

  it('matches "Parameter Encoding" of the OAuth wiki TestCases', () => {
    expect(percentEncode('abcABC123')).toBe('abcABC123');
    expect(percentEncode('-._~')).toBe('-._~');
    expect(percentEncode('%')).toBe('%25');
    expect(percentEncode('&=*')).toBe('%26%3D%2A');
    expect(percentEncode('\u000A')).toBe('%0A');
    expect(percentEncode('\u0020')).toBe('%20');
    expect(percentEncode('\u007F')).toBe('%7F');
    expect(percentEncode('\u0080')).toBe('%C2%80');
    expect(percentEncode('\u3001')).toBe('%E3%80%81');
  });

  it("encodes ' ( ) too, which encodeURIComponent leaves alone (RFC 5849 section 3.6)", () => {
    // No published vector covers these three, so check the rule itself: one uppercase %XX each.
    for (const c of ["'", '(', ')']) {
      expect(percentEncode(c)).toMatch(/^%[0-9A-F]{2}$/);
      expect(decodeURIComponent(percentEncode(c))).toBe(c);
    }
  });
});

describe('signatureBaseString (RFC 5849 section 3.4.1)', () => {
  // Section 3.4.1.1: the request, its Authorization header and its body "c2&a3=2+q".
  const url = 'http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b';
  const header = `OAuth realm="Example",
                    oauth_consumer_key="9djdj82h48djs9d2",
                    oauth_token="kkk9d7dh3k39sjv7",
                    oauth_signature_method="HMAC-SHA1",
                    oauth_timestamp="137131201",
                    oauth_nonce="7d8f3e4a",
                    oauth_signature="bYT5CMsGcbgUdFHObYMEfcx6bsw%3D"`;
  const body: Param[] = [...new URLSearchParams('c2&a3=2+q')];
  const baseString = signatureBaseString('POST', url, [...Object.entries(parsed(header)), ...body]);

  it('reproduces the base string printed in section 3.4.1.1', () => {
    expect(baseString).toBe(
      'POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q' +
        '%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_' +
        'key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m' +
        'ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk' +
        '9d7dh3k39sjv7',
    );
  });

  it('normalizes the parameters as printed at the end of section 3.4.1.3.2', () => {
    expect(baseStringParts(baseString)[2]).toBe(
      'a2=r%20b&a3=2%20q&a3=a&b5=%3D%253D&c%40=&c2=&oauth_consumer_key=9dj' +
        'dj82h48djs9d2&oauth_nonce=7d8f3e4a&oauth_signature_method=HMAC-SHA1' +
        '&oauth_timestamp=137131201&oauth_token=kkk9d7dh3k39sjv7',
    );
  });

  it('builds the base string URIs of the section 3.4.1.2 examples', () => {
    // "GET /r%20v/X?id=123" to Host EXAMPLE.COM:80, and an HTTPS "GET /?q=1" to www.example.net:8080.
    expect(baseStringParts(signatureBaseString('GET', 'http://EXAMPLE.COM:80/r%20v/X?id=123', []))[1]).toBe(
      'http://example.com/r%20v/X',
    );
    expect(baseStringParts(signatureBaseString('GET', 'https://www.example.net:8080/?q=1', []))[1]).toBe(
      'https://www.example.net:8080/',
    );
  });

  it('sorts by encoded name, then encoded value ("Normalize Request Parameters", OAuth wiki TestCases)', () => {
    const normalized = (query: string) =>
      baseStringParts(signatureBaseString('GET', `http://example.com/?${query}`, []))[2];
    expect(normalized('name')).toBe('name=');
    expect(normalized('a=b')).toBe('a=b');
    expect(normalized('a=b&c=d')).toBe('a=b&c=d');
    expect(normalized('x!y=a&x=a')).toBe('x=a&x%21y=a');
    // Left out: the page's row "a=x!y&a=x+y" -> "a=x%20y&a=%21y" is a typo on the page itself (its
    // own encoding rules make x!y into x%21y). Sorting equal names by value is covered by the two
    // a3 parameters of the RFC example above.
  });
});

describe('RFC 5849 section 1.2 (photos.example.net), signatures as published', () => {
  // Client credentials of the example. The RFC prints oauth_signature values percent-encoded.
  const consumerSecret = 'kd94hf93k423kf44';

  it('verifies the temporary credential request (POST https://photos.example.net/initiate)', () => {
    const header = `OAuth realm="Photos",
        oauth_consumer_key="dpf43f3p2l4k3l03",
        oauth_signature_method="HMAC-SHA1",
        oauth_timestamp="137131200",
        oauth_nonce="wIjqoS",
        oauth_callback="http%3A%2F%2Fprinter.example.com%2Fready",
        oauth_signature="74KNZJeDHnMBp0EMJ9ZHt%2FXKycU%3D"`;
    // No token yet, so the token secret is empty.
    expect(
      verifyRequestSignature('POST', 'https://photos.example.net/initiate', parsed(header), consumerSecret, ''),
    ).toBe(true);
  });

  it('verifies the token request (POST https://photos.example.net/token)', () => {
    const header = `OAuth realm="Photos",
        oauth_consumer_key="dpf43f3p2l4k3l03",
        oauth_token="hh5s93j4hdidpola",
        oauth_signature_method="HMAC-SHA1",
        oauth_timestamp="137131201",
        oauth_nonce="walatlh",
        oauth_verifier="hfdp7dh39dks9884",
        oauth_signature="gKgrFCywp7rO0OXSjdot%2FIHF7IU%3D"`;
    // Signed with the temporary credentials' secret from the /initiate response.
    const tokenSecret = 'hdhd0244k9j7ao03';
    expect(
      verifyRequestSignature('POST', 'https://photos.example.net/token', parsed(header), consumerSecret, tokenSecret),
    ).toBe(true);
  });

  it('signs the photo request (GET /photos?file=vacation.jpg&size=original)', () => {
    // The RFC shows only the request line and Host for this one. Unlike the two requests above it is
    // not described as going over TLS, and the published signature reproduces with "http".
    const url = 'http://photos.example.net/photos?file=vacation.jpg&size=original';
    const tokenSecret = 'pfkkdhi9sl3r4s00';
    const protocolParams: Param[] = [
      ['oauth_consumer_key', 'dpf43f3p2l4k3l03'],
      ['oauth_token', 'nnch734d00sl2jdk'],
      ['oauth_signature_method', 'HMAC-SHA1'],
      ['oauth_timestamp', '137131202'],
      ['oauth_nonce', 'chapoH'],
    ];
    const published = decodeURIComponent('MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D');

    const signature = hmacSha1Signature(signatureBaseString('GET', url, protocolParams), consumerSecret, tokenSecret);
    expect(signature).toBe(published);

    const header = `OAuth realm="Photos",
        oauth_consumer_key="dpf43f3p2l4k3l03",
        oauth_token="nnch734d00sl2jdk",
        oauth_signature_method="HMAC-SHA1",
        oauth_timestamp="137131202",
        oauth_nonce="chapoH",
        oauth_signature="MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D"`;
    expect(verifyRequestSignature('GET', url, parsed(header), consumerSecret, tokenSecret)).toBe(true);
  });

  // Not used: the section 3.1 / 3.4.1.1 request prints oauth_signature="bYT5CMsGcbgUdFHObYMEfcx6bsw%3D"
  // with client secret "j49sk3j29djd" and token secret "dh893hdasih9", but HMAC-SHA1 of the RFC's own
  // base string (asserted above) under that key does not give it, so only its base string is tested.
  // The section 3.5.1 example signature comes without secrets and cannot be checked either.
});

describe('X/Twitter worked example', () => {
  // Credentials, nonce, timestamp and request from "Creating a signature" / "Authorizing a request".
  const credentials = {
    consumerKey: 'xvz1evFS4wEEPTGEFPHBog',
    consumerSecret: 'kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw',
    token: '370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb',
    tokenSecret: 'LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE',
  };
  const bodyParams: Param[] = [['status', 'Hello Ladies + Gentlemen, a signed OAuth request!']];
  const options = { nonce: 'kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg', timestamp: 1318622958, bodyParams };
  const protocolParams: Param[] = [
    ['oauth_consumer_key', credentials.consumerKey],
    ['oauth_nonce', options.nonce],
    ['oauth_signature_method', 'HMAC-SHA1'],
    ['oauth_timestamp', '1318622958'],
    ['oauth_token', credentials.token],
    ['oauth_version', '1.0'],
  ];

  // "Creating a signature" as published on developer.twitter.com for api.twitter.com/1.1.
  const twitterUrl = 'https://api.twitter.com/1.1/statuses/update.json?include_entities=true';
  const twitterBaseString =
    'POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521';

  it('reproduces the parameter string and signature base string of "Creating a signature"', () => {
    const baseString = signatureBaseString('POST', twitterUrl, [...protocolParams, ...bodyParams]);
    expect(baseString).toBe(twitterBaseString);
    expect(baseStringParts(baseString)[2]).toBe(
      'include_entities=true&oauth_consumer_key=xvz1evFS4wEEPTGEFPHBog&oauth_nonce=kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg&oauth_signature_method=HMAC-SHA1&oauth_timestamp=1318622958&oauth_token=370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb&oauth_version=1.0&status=Hello%20Ladies%20%2B%20Gentlemen%2C%20a%20signed%20OAuth%20request%21',
    );
  });

  it('reproduces the signature of "Creating a signature": hCtSmYh+iHYCEqBWrE7C7hYmtUk=', () => {
    expect(hmacSha1Signature(twitterBaseString, credentials.consumerSecret, credentials.tokenSecret)).toBe(
      'hCtSmYh+iHYCEqBWrE7C7hYmtUk=',
    );
    const header = authorizationHeader('POST', twitterUrl, credentials, options);
    expect(parsed(header).oauth_signature).toBe('hCtSmYh+iHYCEqBWrE7C7hYmtUk=');
  });

  it('builds exactly the header printed in "Authorizing a request"', () => {
    // That page prints oauth_signature="tnnArxj06cWHq44gCs1OSKk%2FjLY%3D" (the current docs.x.com copy
    // too, although its request line now says /1.1 on api.x.com). The value belongs to the page's
    // original revision, whose request was POST /1/statuses/update.json on api.twitter.com; the same
    // credentials give a different signature for /1.1 (above) or api.x.com (below).
    const header = authorizationHeader(
      'POST',
      'https://api.twitter.com/1/statuses/update.json?include_entities=true',
      credentials,
      options,
    );
    expect(header).toBe(
      'OAuth oauth_consumer_key="xvz1evFS4wEEPTGEFPHBog", oauth_nonce="kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg", oauth_signature="tnnArxj06cWHq44gCs1OSKk%2FjLY%3D", oauth_signature_method="HMAC-SHA1", oauth_timestamp="1318622958", oauth_token="370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb", oauth_version="1.0"',
    );
  });

  it('reproduces the signature of the current docs.x.com "Creating a signature" (api.x.com)', () => {
    // The page's base string is printed with Markdown escapes ("include\_entities"), so only its
    // signature is compared.
    const header = authorizationHeader(
      'POST',
      'https://api.x.com/1.1/statuses/update.json?include_entities=true',
      credentials,
      options,
    );
    expect(parsed(header).oauth_signature).toBe('Ls93hJiZbQ3akF3HF3x1Bz8/zU4=');
  });

  describe('verifyRequestSignature', () => {
    const { consumerSecret, tokenSecret } = credentials;
    const header = parsed(authorizationHeader('POST', twitterUrl, credentials, options));

    /** Gives `fields` a correct HMAC-SHA1 signature, so only the property under test can fail. */
    function resigned(fields: Record<string, string>): Record<string, string> {
      const baseString = signatureBaseString('POST', twitterUrl, [...Object.entries(fields), ...bodyParams]);
      return { ...fields, oauth_signature: hmacSha1Signature(baseString, consumerSecret, tokenSecret) };
    }

    it('accepts the correctly signed request', () => {
      expect(verifyRequestSignature('POST', twitterUrl, header, consumerSecret, tokenSecret, bodyParams)).toBe(true);
      expect(
        verifyRequestSignature('POST', twitterUrl, resigned(header), consumerSecret, tokenSecret, bodyParams),
      ).toBe(true);
    });

    it('rejects the request once anything signed or any secret changes', () => {
      const verify = (
        url: string,
        fields: Record<string, string>,
        secrets: [string, string] = [consumerSecret, tokenSecret],
        body: Param[] = bodyParams,
        method = 'POST',
      ) => verifyRequestSignature(method, url, fields, secrets[0], secrets[1], body);

      expect(verify('https://api.twitter.com/1.1/statuses/destroy.json?include_entities=true', header)).toBe(false);
      expect(verify('https://api.x.com/1.1/statuses/update.json?include_entities=true', header)).toBe(false);
      expect(verify('https://api.twitter.com/1.1/statuses/update.json?include_entities=false', header)).toBe(false);
      expect(verify(`${twitterUrl}&trim_user=true`, header)).toBe(false);
      expect(verify(twitterUrl, header, ['another consumer secret', tokenSecret])).toBe(false);
      expect(verify(twitterUrl, header, [consumerSecret, 'another token secret'])).toBe(false);
      expect(verify(twitterUrl, header, undefined, [['status', 'Hello Ladies + Gentlemen']])).toBe(false);
      expect(verify(twitterUrl, header, undefined, undefined, 'PUT')).toBe(false);
      expect(verify(twitterUrl, { ...header, oauth_nonce: 'another nonce' })).toBe(false);
      expect(verify(twitterUrl, { ...header, oauth_signature: 'hCtSmYh+iHYCEqBWrE7C7hYmtUK=' })).toBe(false);
      expect(verify(twitterUrl, { ...header, oauth_signature: 'hCtSmYh+iHYCEqBWrE7C7hYmtUk' })).toBe(false);
      expect(verify(twitterUrl, { ...header, oauth_signature: '' })).toBe(false);
    });

    it('accepts HMAC-SHA1 only, and version 1.0 only', () => {
      const { oauth_signature: _signature, ...unsigned } = header;
      expect(verifyRequestSignature('POST', twitterUrl, unsigned, consumerSecret, tokenSecret, bodyParams)).toBe(false);
      // Correct HMACs over the altered parameters: only the method or version check can refuse them.
      const plaintext = resigned({ ...header, oauth_signature_method: 'PLAINTEXT' });
      expect(verifyRequestSignature('POST', twitterUrl, plaintext, consumerSecret, tokenSecret, bodyParams)).toBe(
        false,
      );
      const version2 = resigned({ ...header, oauth_version: '2.0' });
      expect(verifyRequestSignature('POST', twitterUrl, version2, consumerSecret, tokenSecret, bodyParams)).toBe(false);
      // A PLAINTEXT "signature" is the key itself (RFC 5849 section 3.4.4).
      const plainKey = {
        ...header,
        oauth_signature_method: 'PLAINTEXT',
        oauth_signature: `${consumerSecret}&${tokenSecret}`,
      };
      expect(verifyRequestSignature('POST', twitterUrl, plainKey, consumerSecret, tokenSecret, bodyParams)).toBe(false);
    });

    it('returns false instead of throwing for a URL it cannot parse', () => {
      expect(verifyRequestSignature('POST', 'not a url', header, consumerSecret, tokenSecret, bodyParams)).toBe(false);
    });
  });
});

describe('authorizationHeader defaults', () => {
  const credentials = { consumerKey: 'ck', consumerSecret: 'cs', token: 'tk', tokenSecret: 'ts' };

  it('uses a fresh 32-character alphanumeric nonce and the current time', () => {
    const before = Math.floor(Date.now() / 1000);
    const first = parsed(authorizationHeader('GET', 'https://api.example.com/me', credentials));
    const second = parsed(authorizationHeader('GET', 'https://api.example.com/me', credentials));
    const after = Math.floor(Date.now() / 1000);

    expect(first.oauth_nonce).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(second.oauth_nonce).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(first.oauth_nonce).not.toBe(second.oauth_nonce);
    expect(Number(first.oauth_timestamp)).toBeGreaterThanOrEqual(before);
    expect(Number(first.oauth_timestamp)).toBeLessThanOrEqual(after);
  });
});

describe('parseAuthorizationHeader', () => {
  it('reads back what authorizationHeader wrote, decoded', () => {
    const credentials = { consumerKey: 'key with space', consumerSecret: 'c&s', token: 't/k=', tokenSecret: 't s' };
    const url = 'https://api.example.com/x?a=1';
    const header = authorizationHeader('GET', url, credentials, { nonce: 'n!*', timestamp: 42 });

    const fields = parsed(header);
    expect(fields).toEqual({
      oauth_consumer_key: 'key with space',
      oauth_nonce: 'n!*',
      oauth_signature: expect.any(String),
      oauth_signature_method: 'HMAC-SHA1',
      oauth_timestamp: '42',
      oauth_token: 't/k=',
      oauth_version: '1.0',
    });
    expect(verifyRequestSignature('GET', url, fields, 'c&s', 't s')).toBe(true);
  });

  it('accepts any case of the scheme and free whitespace, and drops realm', () => {
    expect(parseAuthorizationHeader('oauth   realm="Example" ,\n\toauth_token = "a%20b",oauth_nonce="n"  ')).toEqual({
      oauth_token: 'a b',
      oauth_nonce: 'n',
    });
    expect(parseAuthorizationHeader('OAUTH oauth_token=""')).toEqual({ oauth_token: '' });
  });

  it('keeps a parameter named __proto__ as an ordinary key', () => {
    const fields = parsed('OAuth __proto__="x"');
    expect(Object.getPrototypeOf(fields)).toBe(Object.prototype);
    expect(Object.keys(fields)).toEqual(['__proto__']);
  });

  it('returns null, never throwing, for anything that is not a well-formed OAuth header', () => {
    const malformed = [
      undefined,
      '',
      'Bearer abc',
      'Basic b2F1dGg6eA==',
      'OAuth',
      'OAuth ',
      'OAuthoauth_token="a"',
      'OAuth oauth_token=a',
      'OAuth oauth_token="a" oauth_nonce="b"',
      'OAuth oauth_token="a",',
      'OAuth oauth_token="a',
      'OAuth ="a"',
      'OAuth oauth_token="a"; oauth_nonce="b"',
      'OAuth oauth_token="%E0%A4%A"',
      'OAuth oauth_token="a", oauth_token="b"',
    ];
    for (const header of malformed) expect(parseAuthorizationHeader(header), String(header)).toBeNull();
  });
});
