/*
 * http_result.c — what the outcome of an HTTP request means: whether it is
 * worth retrying, and the ERROR that reports a request that failed.
 *
 * No curl here (only http.c and http_stream.c include curl.h): this reads
 * only the M365HttpResponse that http.c filled in. Error messages name the
 * endpoint without its query string and never carry a header or a body.
 */
#include "postgres.h"

#include "http.h"

bool
m365_http_is_transient(const M365HttpResponse *resp)
{
	switch (resp->result)
	{
		case M365_HTTP_OK:
			return resp->status == 429 || resp->status == 503 ||
				resp->status == 504 || resp->status == 502 || resp->status == 500;
		case M365_HTTP_ERR_RESOLVE:
		case M365_HTTP_ERR_CONNECT:
		case M365_HTTP_ERR_TIMEOUT:
		case M365_HTTP_ERR_IO:
			return true;
		default:
			return false;
	}
}

void
m365_http_raise(const M365HttpRequest *req)
{
	const M365HttpResponse *r = &req->response;
	char	   *ep = m365_http_endpoint(req->url);
	const char *what;
	int			code = ERRCODE_CONNECTION_FAILURE;

	switch (r->result)
	{
		case M365_HTTP_ERR_URL:
			what = "the URL is not an https URL";
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
		case M365_HTTP_ERR_RESOLVE:
			what = "the host name did not resolve";
			break;
		case M365_HTTP_ERR_CONNECT:
			what = "the connection was refused or unreachable";
			break;
		case M365_HTTP_ERR_TLS:
			what = "the TLS handshake failed (certificate not trusted or not for this host)";
			break;
		case M365_HTTP_ERR_TIMEOUT:
			what = "it timed out (m365sync.http_timeout)";
			break;
		case M365_HTTP_ERR_TOO_LARGE:
			what = "the response was larger than allowed";
			code = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
			break;
		case M365_HTTP_ERR_IO:
			what = "the connection broke";
			break;
		case M365_HTTP_ERR_CA_FILE:
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("could not read the CA bundle named by m365sync.ca_file"),
					 errdetail("No request to %s was sent.", ep)));
			break;
		case M365_HTTP_ERR_CANCELLED:
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("request to %s was cancelled", ep)));
			break;
		default:
			what = "of an internal error";
			code = ERRCODE_INTERNAL_ERROR;
			break;
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg("request to %s failed: %s", ep, what),
			 r->error_detail ? errdetail("%s", r->error_detail) : 0,
			 r->result == M365_HTTP_ERR_TLS ?
			 errhint("Check that the server's certificate is signed by a CA in the system store or in m365sync.ca_file and names the host.") : 0));
}
