/** A raw HTTP answer for the emulator's tests (emulator/test/): status, headers, the text, and the JSON body when it is JSON. */
export interface HttpResult {
  status: number;
  contentType: string | null;
  headers: Headers;
  text: string;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export async function http(url: string, init?: RequestInit): Promise<HttpResult> {
  const response = await fetch(url, init);
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    headers: response.headers,
    text,
    body,
  };
}
