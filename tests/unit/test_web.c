// SPDX-License-Identifier: GPL-2.0
/*
 * The live page dmuserd builds in (daemon/web.S) and hands to libdmuser's
 * HTTP endpoint as its index_html: the whole of dashboards/web/index.html,
 * self-contained.  (Serving index_html at / is tested in tests/unit/lib,
 * http_index_page.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

extern const char dmu_web_index_html[], dmu_web_index_html_end[];

TEST(web_live_page_is_built_in_whole)
{
	const char *path = getenv("DMU_WEB_INDEX") ? getenv("DMU_WEB_INDEX") :
			   "../../dashboards/web/index.html";
	size_t len = (size_t)(dmu_web_index_html_end - dmu_web_index_html);
	FILE *f = fopen(path, "rb");
	char *file;
	long n;

	REQUIRE(f != NULL);
	REQUIRE(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0);
	rewind(f);
	file = malloc((size_t)n);
	REQUIRE(file && fread(file, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	CHECK_EQ(len, (size_t)n);
	CHECK(memcmp(dmu_web_index_html, file, len) == 0);
	free(file);

	/* it polls /metrics and exposes its charts' points */
	const char *page = dmu_web_index_html;	/* NUL-terminated by web.S */
	CHECK(strncmp(page, "<!doctype html>", 15) == 0);
	CHECK(strstr(page, "</html>") != NULL);
	CHECK(strstr(page, "fetch(") != NULL);
	CHECK(strstr(page, "data-points") != NULL);
	/* self-contained: nothing loaded from elsewhere at run time */
	CHECK(strstr(page, "src=\"http") == NULL);
	CHECK(strstr(page, "href=\"http") == NULL);
	CHECK(strstr(page, "import ") == NULL);
}
